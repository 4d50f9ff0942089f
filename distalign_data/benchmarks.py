"""Benchmark rows for the rest of the package: build through the builders, cache, return.

``load_rows(name)`` is what runners, scoring and the importer call. The first call
builds the dataset with its ``datasets`` builder into the user cache (a folder keyed
by a fingerprint of the builder code, so a changed builder never serves stale rows);
later calls in the same process return a copy of the rows held in memory. The
upstream files a build reads are verified against the manifest on every first call
in a process, cached build or not.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
from pathlib import Path

from distalign_data.names import DATASETS
from distalign_data.sources import MANIFEST_PATH, UpstreamSource, resolve_source

# Canonical dataset name -> "module:class" of its builder.
BUILDERS = {
    "opinionqa_subset": "distalign_data.builders.opinionqa_subset:OpinionQASubset",
    "global_opinionqa_contentious": "distalign_data.builders.global_opinionqa_contentious:GlobalOpinionQAContentious",
    "nyt_books": "distalign_data.builders.nyt_books:NYTBooks",
}
DEFAULT_CONFIG = "default"
# Package modules whose code decides the rows (neighbours use distributions.align/total_variation;
# the groups come from names.GROUPS).
_FINGERPRINTED = ("schema.py", "neighbours.py", "distributions.py", "names.py", "sources.py", "upstream_manifest.json")
_rows_in_memory: dict[tuple[str, str, str, str], list[dict]] = {}


def builder_class(name: str):
    """The ``datasets.GeneratorBasedBuilder`` subclass that builds ``name``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    module, cls = BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def files_digest(paths) -> str:
    """A short hash of the names and bytes of ``paths`` (in the order given): a cache key for code."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A short hash of every file that decides what the builders produce."""
    package = Path(__file__).parent
    builders = Path(importlib.import_module("distalign_data.builders").__file__).parent
    return files_digest(sorted(builders.glob("*.py")) + [package / name for name in _FINGERPRINTED])


def make_builder(name: str, *, config: str = DEFAULT_CONFIG, source=None, cache_dir: str | Path | None = None):
    """A builder for ``name``/``config`` reading ``source``, its cache under ``cache_dir``.

    Without ``cache_dir`` the build goes to the user cache (``$DISTALIGN_CACHE`` or
    ``~/.cache/distalign``), in a folder keyed by :func:`code_fingerprint`.
    """
    resolved = resolve_source(source)
    cache = Path(cache_dir) if cache_dir is not None else resolved.cache / "datasets" / code_fingerprint()
    return builder_class(name)(
        config_name=config,
        cache_dir=str(cache),
        source=str(resolved.root) if resolved.root else None,
        # Only a non-default manifest is passed, so the usual config id (and cache folder) stays put.
        **({"manifest": str(resolved.manifest)} if resolved.manifest != MANIFEST_PATH else {}),
    )


def _verify_inputs(name: str, config: str, source: UpstreamSource) -> None:
    for relpath in builder_class(name).FILES[config].values():
        source.path(relpath)


def load_benchmark(name: str, *, config: str = DEFAULT_CONFIG, source=None, cache_dir: str | Path | None = None):
    """The built dataset as a ``datasets.Dataset`` (the single ``test`` split)."""
    resolved = resolve_source(source)
    _verify_inputs(name, config, resolved)
    from datasets.exceptions import DatasetGenerationError

    builder = make_builder(name, config=config, source=resolved, cache_dir=cache_dir)
    try:
        builder.download_and_prepare()
    except DatasetGenerationError as error:
        # The builders raise ValueError naming the bad row; surface it, not the wrapper.
        if isinstance(error.__cause__, ValueError):
            raise error.__cause__ from None
        raise
    return builder.as_dataset(split="test")


def load_rows(name: str, source=None, *, config: str = DEFAULT_CONFIG) -> list[dict]:
    """The rows of dataset ``name`` as plain dicts (see ``docs/interfaces.md``, "Benchmark row").

    ``source`` is an upstream directory or an ``UpstreamSource`` (default:
    ``$DISTALIGN_SOURCE``, else a download at the pinned commit). The caller may modify the returned rows.
    """
    resolved = resolve_source(source)
    key = (name, config, resolved.describe(), str(resolved.manifest))
    if key not in _rows_in_memory:
        _rows_in_memory[key] = load_benchmark(name, config=config, source=resolved).to_list()
    return copy.deepcopy(_rows_in_memory[key])
