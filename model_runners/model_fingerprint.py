"""What identifies a local model's files, for the response cache key and the manifest.

A model folder is identified by :func:`folder_sha256`: a SHA-256 over the name
and full SHA-256 of every file at its top level (config, generation config,
tokenizer files and chat template, weights) except documentation. Sampled
hashes (size plus the first and last MiB of each shard) would be faster but are
not sound: a fine-tune that changes only middle layers keeps every shard's
size, header and first and last MiB. Instead each large file is hashed in full
once, and its digest is kept in a digest cache keyed by the file's path, device,
inode, size, modification time and change time (``st_ctime_ns``, which a write
always moves and ``os.utime`` cannot set back), so later start-ups read only
``stat``. As in git's index, a file changed within the last
:data:`RACY_WINDOW_S` seconds is hashed but its digest not kept: file times tick
coarsely, so a write in the same tick as the hash could leave them unchanged. Hashing runs at disk speed (~1-2 GB/s): a 16 GB model costs tens of
seconds once per machine.

A Hub id is identified by the commit its ``main`` ref resolves to in the local
Hugging Face cache (:func:`hub_commit`); files of a commit never change.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "config.json").write_text("{}")
>>> _ = (folder / "README.md").write_text("about the model")
>>> digest = folder_sha256(folder)
>>> _ = (folder / "README.md").write_text("edited")
>>> folder_sha256(folder) == digest
True
>>> _ = (folder / "chat_template.jinja").write_text("{{ messages }}")
>>> folder_sha256(folder) == digest
False
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import time
from pathlib import Path

# Top-level files of a model folder that cannot change what the model outputs.
DOCUMENTATION_FILES = ("README*", "LICENSE*", "NOTICE*", "USE_POLICY*", "*.md", ".*")
# Files at least this large (weight shards) have their digest kept in the digest cache.
DIGEST_CACHE_MIN_BYTES = 64 * 2**20
DIGEST_CACHE_FILE = "file-digests.sqlite"
RACY_WINDOW_S = 2.0


def _digest_cache_path() -> Path:
    from distalign_data.sources import cache_root

    return cache_root() / DIGEST_CACHE_FILE


def _stat_facts(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def file_sha256(path: str | os.PathLike) -> str:
    """Full SHA-256 of a file; a large file's digest is reused while its ``stat`` facts are unchanged."""
    from distalign_data.sources import sha256_file

    stat = os.stat(path)
    if stat.st_size < DIGEST_CACHE_MIN_BYTES:
        return sha256_file(Path(path))
    from distalign_data.model_runners.cache import ResponseCache
    from distalign_data.model_runners.cache import cache_key

    key = cache_key(path=os.path.realpath(path), stat=_stat_facts(stat))
    digests = ResponseCache(_digest_cache_path())
    try:
        known = digests.get(key)
        if known is not None:
            return known["sha256"]
        digest = sha256_file(Path(path))
        settled = time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) >= RACY_WINDOW_S * 1e9
        if settled and _stat_facts(os.stat(path)) == _stat_facts(stat):  # and not written while being read
            digests.put(key, {"sha256": digest})
        return digest
    finally:
        digests.close()


def folder_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 over (name, SHA-256) of each top-level file of a model folder but its documentation.

    Subfolders are left out: ``from_pretrained`` reads the top level only.
    """
    folder = Path(folder).expanduser()
    outer = hashlib.sha256()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or any(fnmatch.fnmatch(entry.name, pattern) for pattern in DOCUMENTATION_FILES):
            continue
        outer.update(f"{entry.name}\0{file_sha256(entry.path)}\n".encode("utf-8"))
    return outer.hexdigest()


def hub_commit(repo_id: str, *, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The commit ``main`` of a Hub model resolves to in the local Hugging Face cache, or None if it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    return Path(config).parent.name if isinstance(config, str) else None


def model_fingerprint(path: str) -> dict[str, str]:
    """``{"model_sha256": ...}`` for a model folder, ``{"model_revision": <commit>}`` for a cached Hub id.

    ValueError when neither can be found (the cache could not tell versions apart).
    """
    if os.path.isdir(os.path.expanduser(path)):
        return {"model_sha256": folder_sha256(path)}
    commit = hub_commit(path)
    if commit is None:
        raise ValueError(f"hf:{path}: not a model folder and not in the local Hugging Face cache, so its revision is unknown")
    return {"model_revision": commit}
