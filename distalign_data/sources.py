"""Pinned upstream files: where they come from, and proof that they are the right bytes.

Every module that reads the upstream repository
(``nicolemeister/benchmarking-distributional-alignment`` at ``UPSTREAM_COMMIT``) goes
through :func:`resolve_source`. The source is, in this order: an explicit directory
(``--source DIR``), the ``DISTALIGN_SOURCE`` environment variable, or a download of
the raw files at the pinned commit into a user cache directory. Each file is checked
against ``upstream_manifest.json`` (size and SHA-256) before it is used.

Sixteen files hold crowd-worker IDs upstream; the project's mirror carries them
pseudonymised. Both versions are accepted. When the bytes are the upstream
original, the mirror's two rules are applied in memory first (personal columns
emptied, worker IDs replaced by ``anon-`` pseudonyms, files written back the way the
mirror wrote them), so a build from the originals equals a build from the mirror.

Regenerate the manifest from a mirror with
``python -m distalign_data.sources --write-manifest DIR``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from distalign_data.errors import DistalignError

UPSTREAM_REPOSITORY = "nicolemeister/benchmarking-distributional-alignment"
UPSTREAM_COMMIT = "36869b56b214b5ddce13dc234d62b4cbce3706cd"
SOURCE_VARIABLE = "DISTALIGN_SOURCE"
# Overrides where raw files are downloaded from (a test serves them on 127.0.0.1).
BASE_URL_VARIABLE = "DISTALIGN_UPSTREAM_URL"
CACHE_VARIABLE = "DISTALIGN_CACHE"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{UPSTREAM_REPOSITORY}/{UPSTREAM_COMMIT}/"
MANIFEST_PATH = Path(__file__).with_name("upstream_manifest.json")
DOWNLOAD_TIMEOUT_S = 60

# The mirror's pseudonymisation (shared/upstream/README.md): columns emptied in the
# Qualtrics exports, and the columns / JSON keys that hold worker IDs.
PERSONAL_COLUMNS = (
    "IPAddress",
    "LocationLatitude",
    "LocationLongitude",
    "RecipientLastName",
    "RecipientFirstName",
    "RecipientEmail",
    "ExternalReference",
)
WORKER_ID_COLUMN = "Q84"
WORKER_ID_JSON = "nytimes/individual_annotations/NYTIMES_proportions_ID.json"
PSEUDONYM_PREFIX = "anon-"
# Worker-ID cells the mirror left as they were: blanks and the "n/a" placeholder.
_NOT_A_WORKER_ID = ("", "n/a")
# Rows of a Qualtrics export that are headers; the question-text row (index 1) is
# pseudonymised like a value because upstream it holds a worker ID typed as text.
_QUALTRICS_TAG_ROW = 0
_QUALTRICS_IMPORT_ID_ROW = 2


class UpstreamSourceError(DistalignError, RuntimeError):
    """The upstream files cannot be found or downloaded."""


class UpstreamIntegrityError(DistalignError, ValueError):
    """An upstream file is not the pinned version."""


def pseudonym(worker_id: str) -> str:
    """The mirror's pseudonym of a worker ID.

    >>> pseudonym("WORKER1")
    'anon-7e9a95da99dc'
    """
    return PSEUDONYM_PREFIX + hashlib.sha256(f"distalign:{worker_id}".encode("utf-8")).hexdigest()[:12]


def _pseudonymise_value(value: str) -> str:
    if value in _NOT_A_WORKER_ID or value.startswith(PSEUDONYM_PREFIX):
        return value
    return pseudonym(value)


def sanitise_csv(data: bytes) -> bytes:
    """Apply the mirror's rules to a CSV with a ``Q84`` worker-ID column.

    A Qualtrics export (its first row holds ``IPAddress``) keeps its tag and
    ImportId rows; other CSVs keep their single header row.
    """
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    header = rows[0]
    qualtrics = "IPAddress" in header
    header_rows = {_QUALTRICS_TAG_ROW, _QUALTRICS_IMPORT_ID_ROW} if qualtrics else {0}
    emptied = [header.index(name) for name in PERSONAL_COLUMNS if name in header]
    worker = header.index(WORKER_ID_COLUMN)
    for number, row in enumerate(rows):
        if number in header_rows:
            continue
        if number > _QUALTRICS_IMPORT_ID_ROW or not qualtrics:
            for column in emptied:
                if column < len(row):
                    row[column] = ""
        if worker < len(row):
            row[worker] = _pseudonymise_value(row[worker])
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def sanitise_annotations_json(data: bytes) -> bytes:
    """Apply the mirror's rules to ``NYTIMES_proportions_ID.json`` (book -> group -> worker -> rating)."""
    books = json.loads(data.decode("utf-8-sig"))
    for book in books.values():
        for group, ratings in book.items():
            if isinstance(ratings, dict):
                book[group] = {_pseudonymise_value(worker): label for worker, label in ratings.items()}
    return json.dumps(books, ensure_ascii=False, indent=1).encode("utf-8")


def sanitise(relpath: str, data: bytes) -> bytes:
    """The mirror's version of an upstream original that carries personal data."""
    if relpath == WORKER_ID_JSON:
        return sanitise_annotations_json(data)
    if relpath.endswith(".csv"):
        return sanitise_csv(data)
    raise ValueError(f"{relpath}: no pseudonymisation rule for this file")


@functools.lru_cache(maxsize=8)
def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    """A manifest (default: the pinned one): ``{"repository", "commit", "files": {relpath: entry}}``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _verify(path: Path, relpath: str, size: int, mtime_ns: int, manifest: Path) -> bool:
    """Check one file against the manifest; True when it is the upstream original
    of a file the mirror pseudonymised (size and mtime make the cache key)."""
    entry = load_manifest(manifest)["files"][relpath]
    if size != entry["size"] and not entry.get("upstream_sha256"):
        sha = "(not computed)"
    else:
        sha = sha256_file(path)
        if sha == entry["sha256"]:
            return False
        if sha == entry.get("upstream_sha256"):
            return True
    raise UpstreamIntegrityError(
        f"{relpath} ({path}) is not the pinned upstream file: expected {entry['size']} bytes with "
        f"SHA-256 {entry['sha256']}"
        + (f" (or the original, {entry['upstream_sha256']})" if entry.get("upstream_sha256") else "")
        + f"; found {size} bytes with SHA-256 {sha}"
    )


def cache_root() -> Path:
    """distalign's user cache: ``$DISTALIGN_CACHE``, else ``$XDG_CACHE_HOME/distalign`` or ``~/.cache/distalign``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distalign"


@dataclass(frozen=True)
class UpstreamSource:
    """Verified access to the pinned upstream files.

    ``root`` is a local copy (mirror or checkout); ``None`` means files are
    downloaded from ``base_url`` into ``cache`` on first use. ``manifest`` is the
    pinned one except in tests that serve small fixtures.
    """

    root: Path | None
    base_url: str
    cache: Path
    manifest: Path = MANIFEST_PATH

    def describe(self) -> str:
        return str(self.root) if self.root else f"{self.base_url} (cached in {self.cache})"

    def files(self, prefix: str = "") -> list[str]:
        """Manifest paths under ``prefix`` (e.g. ``"results/nytimes/"``), sorted."""
        return sorted(path for path in load_manifest(self.manifest)["files"] if path.startswith(prefix))

    def path(self, relpath: str) -> Path:
        """A local path holding the verified (and, for originals, pseudonymised) file."""
        local = self._local(relpath)
        stat = local.stat()
        try:
            original = _verify(local, relpath, stat.st_size, stat.st_mtime_ns, self.manifest)
        except UpstreamIntegrityError:
            if self.root is None:
                local.unlink(missing_ok=True)  # a bad download must not stick in the cache
            raise
        if not original:
            return local
        sanitised = self.cache / "sanitised" / load_manifest(self.manifest)["files"][relpath]["sha256"] / relpath
        if not sanitised.exists():
            _write_atomically(sanitised, sanitise(relpath, local.read_bytes()))
        return sanitised

    def read_bytes(self, relpath: str) -> bytes:
        return self.path(relpath).read_bytes()

    def read_text(self, relpath: str) -> str:
        return self.read_bytes(relpath).decode("utf-8")

    def read_json(self, relpath: str):
        return json.loads(self.read_text(relpath))

    def _local(self, relpath: str) -> Path:
        if relpath not in load_manifest(self.manifest)["files"]:
            raise ValueError(f"{relpath!r} is not a file of the upstream manifest {self.manifest}")
        if self.root is not None:
            local = self.root / relpath
            if not local.is_file():
                raise UpstreamSourceError(f"{relpath} is missing from the upstream source {self.root}")
            return local
        local = self.cache / "upstream" / load_manifest(self.manifest)["commit"] / relpath
        if not local.is_file():
            self._download(relpath, local)
        return local

    def _download(self, relpath: str, target: Path) -> None:
        url = self.base_url + urllib.parse.quote(relpath)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as error:
            raise UpstreamSourceError(
                f"no upstream source: pass --source DIR or set {SOURCE_VARIABLE} to a copy of "
                f"{UPSTREAM_REPOSITORY} at commit {UPSTREAM_COMMIT}; downloading {url} failed ({error})"
            ) from None
        _write_atomically(target, data)


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, target)


def resolve_source(
    source: str | os.PathLike | UpstreamSource | None = None, *, manifest: str | os.PathLike | None = None
) -> UpstreamSource:
    """The upstream source: ``source``, else ``$DISTALIGN_SOURCE``, else a download.

    Nothing is read or downloaded here; files are verified when opened, against
    ``manifest`` (default: the pinned manifest shipped with the package).
    """
    if isinstance(source, UpstreamSource):
        return source
    manifest = Path(manifest).resolve() if manifest is not None else MANIFEST_PATH
    cache = cache_root()
    base_url = os.environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    chosen = source if source is not None else os.environ.get(SOURCE_VARIABLE) or None
    if chosen is None:
        return UpstreamSource(root=None, base_url=base_url, cache=cache, manifest=manifest)
    root = Path(chosen).expanduser().resolve()
    if not root.is_dir():
        origin = "--source" if source is not None else SOURCE_VARIABLE
        raise UpstreamSourceError(f"{origin} names {root}, which is not a directory")
    return UpstreamSource(root=root, base_url=base_url, cache=cache, manifest=manifest)


def write_manifest(mirror: Path, sanitised_tsv: Path | None, out: Path = MANIFEST_PATH) -> dict:
    """Record every file of ``mirror`` (size, SHA-256) plus the upstream hashes of sanitised files."""
    upstream_hashes = {}
    if sanitised_tsv is not None:
        with sanitised_tsv.open(encoding="utf-8", newline="") as handle:
            for entry in csv.DictReader(handle, delimiter="\t"):
                upstream_hashes[entry["path"]] = (entry["upstream_sha256"], entry["mirror_sha256"])
    files = {}
    for path in sorted(p for p in mirror.rglob("*") if p.is_file()):
        relpath = path.relative_to(mirror).as_posix()
        entry = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        if relpath in upstream_hashes:
            upstream, mirrored = upstream_hashes.pop(relpath)
            if mirrored != entry["sha256"]:
                raise ValueError(f"{relpath}: the mirror's bytes do not match the hash in {sanitised_tsv}")
            entry["upstream_sha256"] = upstream
        files[relpath] = entry
    if upstream_hashes:
        raise ValueError(f"{sanitised_tsv} lists files the mirror lacks: {sorted(upstream_hashes)}")
    manifest = {"repository": UPSTREAM_REPOSITORY, "commit": UPSTREAM_COMMIT, "files": files}
    out.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the pinned upstream manifest from a mirror.")
    parser.add_argument("--write-manifest", metavar="DIR", type=Path, required=True)
    parser.add_argument(
        "--sanitised",
        metavar="TSV",
        type=Path,
        help="SANITISED.tsv with the upstream hashes of pseudonymised files (default: DIR/../SANITISED.tsv)",
    )
    args = parser.parse_args(argv)
    tsv = args.sanitised or args.write_manifest.parent / "SANITISED.tsv"
    manifest = write_manifest(args.write_manifest, tsv if tsv.exists() else None)
    print(f"{MANIFEST_PATH}: {len(manifest['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
