"""What the three builders share: the source-aware config, the split, validation, parsing helpers."""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import datasets

from distalign_data.schema import row_features, validate_row
from distalign_data.sources import UPSTREAM_COMMIT, UPSTREAM_REPOSITORY, resolve_source

SPLIT = datasets.Split.TEST
VERSION = datasets.Version("1.0.0")
HOMEPAGE = f"https://github.com/{UPSTREAM_REPOSITORY}/tree/{UPSTREAM_COMMIT}"
PAPER_CITATION = """@inproceedings{meister2025benchmarking,
  title     = {Benchmarking Distributional Alignment of Large Language Models},
  author    = {Meister, Nicole and Guestrin, Carlos and Hashimoto, Tatsunori},
  booktitle = {Proceedings of the 2025 Conference of the Nations of the Americas Chapter of the Association for Computational Linguistics (NAACL)},
  year      = {2025},
  eprint    = {2411.05403},
  archivePrefix = {arXiv}
}"""


@dataclass
class SourceConfig(datasets.BuilderConfig):
    """A builder config that also says where the upstream files are (``None``: resolve as usual)."""

    source: str | None = None
    manifest: str | None = None


class UpstreamBuilder(datasets.GeneratorBasedBuilder):
    """A builder whose rows come from pinned upstream files.

    Subclasses set ``DATASET``, ``LICENSE``, ``DESCRIPTION`` and ``FILES`` (a key ->
    upstream path map per config) and implement ``_rows(paths)``.
    """

    BUILDER_CONFIG_CLASS = SourceConfig
    BUILDER_CONFIGS = [SourceConfig(name="default", version=VERSION)]
    DEFAULT_CONFIG_NAME = "default"
    DATASET: str
    LICENSE: str
    DESCRIPTION: str
    CITATION: str = PAPER_CITATION
    FILES: Mapping[str, Mapping[str, str]]

    def _features(self) -> datasets.Features:
        return row_features(self.DATASET)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=self._features(),
            homepage=HOMEPAGE,
            license=self.LICENSE,
            citation=self.CITATION,
        )

    def _split_generators(self, dl_manager):
        source = resolve_source(self.config.source, manifest=self.config.manifest)
        paths = {key: str(source.path(relpath)) for key, relpath in self.FILES[self.config.name].items()}
        return [datasets.SplitGenerator(name=SPLIT, gen_kwargs={"paths": paths})]

    def _generate_examples(self, paths: dict[str, str]) -> Iterator[tuple[str, dict]]:
        seen = set()
        for row in self._rows(paths):
            if self.config.name == "default":
                validate_row(row, self.DATASET)
            if row["id"] in seen:
                raise ValueError(f"row {row['id']!r}: the id occurs twice")
            seen.add(row["id"])
            yield row["id"], row

    def _rows(self, paths: dict[str, str]) -> Iterator[dict]:
        raise NotImplementedError


def parse_string_list(text: str, *, where: str) -> list[str]:
    """Parse a Python list-of-strings literal as the upstream files store it, without evaluating code.

    >>> parse_string_list("['Yes', \\"Don't know\\"]", where="q1")
    ['Yes', "Don't know"]
    >>> parse_string_list("[1, 2]", where="q1")
    Traceback (most recent call last):
    ...
    ValueError: q1: expected a list of strings, got '[1, 2]'
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if not isinstance(node, ast.List) or not all(
        isinstance(item, ast.Constant) and isinstance(item.value, str) for item in node.elts
    ):
        raise ValueError(f"{where}: expected a list of strings, got {text!r}")
    return [item.value for item in node.elts]


def normalise(values: Sequence[float], *, where: str) -> list[float]:
    """Values divided by their sum (in float64); ``ValueError`` naming ``where`` if the sum is not positive."""
    total = math.fsum(values)
    if not total > 0 or any(v < 0 for v in values):
        raise ValueError(f"{where}: cannot normalise {list(values)!r} (negative entry or no mass)")
    return [v / total for v in values]


def aligned_counts(counts: Mapping[str, float], options: Sequence[str], *, where: str) -> list[float]:
    """Counts keyed by option text re-keyed onto ``options`` (absent options count 0)."""
    unknown = [option for option in counts if option not in options]
    if unknown:
        raise ValueError(f"{where}: options {unknown!r} are not among {list(options)!r}")
    return [float(counts.get(option, 0.0)) for option in options]
