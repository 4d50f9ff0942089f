"""Hub-ready dataset folders (``distalign build``) and their release (``distalign release``).

A folder holds, per builder config, one Parquet file under ``data/`` (default
config) or ``<config>/``, and a ``README.md`` dataset card: its YAML (``configs``,
``dataset_info``, licence, ...) is generated from the builders' ``DatasetInfo``; its
text is the template in ``cards/`` with numbers computed from the built rows.
``datasets.load_dataset(folder[, config])`` loads such a folder offline.

``release`` pushes each folder to the dataset repository ``distalign/<name>`` and
the metric folder ``metrics/distalign/`` to the Space ``distalign/distalign`` (so
``evaluate.load("distalign/distalign")`` works once published). The token comes
only from the ``HF_TOKEN`` environment variable.
"""

from __future__ import annotations

import argparse
import copy
import importlib.resources
import os
import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from distalign_data.errors import DistalignError
from distalign_data.names import DATASETS, GROUPS
from distalign_data.sources import (
    UPSTREAM_COMMIT,
    UPSTREAM_REPOSITORY,
)

NAMESPACE = "distalign"
METRIC_SPACE = "distalign"
TOKEN_VARIABLE = "HF_TOKEN"
DEFAULT_OUT = Path("out") / "hub"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METRIC_DIR = PROJECT_ROOT / "metrics" / "distalign"
DATA_FILE = "test-00000-of-00001.parquet"
CARD_FILE = "README.md"
COMMON_CARD = "common.md"
PRETTY_NAMES = {
    "opinionqa_subset": "OpinionQA contentious subset (distributional alignment)",
    "global_opinionqa_contentious": "GlobalOpinionQA contentious subset (distributional alignment)",
    "nyt_books": "NYT Book Opinions (distributional alignment)",
}
_SKIPPED_PARTS = ("__pycache__", ".ipynb_checkpoints")


class ReleaseError(DistalignError, RuntimeError):
    """A release could not be made (no token, no network, missing folders)."""


def config_dir(config: str) -> str:
    """The folder of a config inside a dataset folder (``data`` for the default config)."""
    return "data" if config == "default" else config


def _card_statistics(name: str, tables: dict) -> dict[str, str]:
    """Numbers the card text quotes, computed from the built rows (never typed by hand)."""
    rows = tables["default"]
    questions = list(dict.fromkeys(row["question_id"] for row in rows))
    groups = Counter(row["group"] for row in rows)
    stats = {
        "dataset": name,
        "commit": UPSTREAM_COMMIT,
        "repository": UPSTREAM_REPOSITORY,
        "num_rows": str(len(rows)),
        "num_questions": str(len(questions)),
        "num_groups": str(len(groups)),
        "similar_counts": ", ".join(
            f"{count} rows with {size}" for size, count in sorted(Counter(len(r["similar_question_ids"]) for r in rows).items(), reverse=True)
        ),
    }
    if name == "opinionqa_subset":
        present = {(row["question_id"], row["group"]) for row in rows}
        expected = [group for members in GROUPS[name].values() for group in members]
        absent = [f"{q} / {g}" for q in questions for g in expected if (q, g) not in present]
        stats["absent_rows"] = ", ".join(absent) or "none"
    if name == "global_opinionqa_contentious":
        per_question = Counter(row["question_id"] for row in rows)
        stats["num_countries"] = str(len(groups))
        stats["four_country_questions"] = str(sum(1 for n in per_question.values() if n == 4))
    if name == "nyt_books":
        ratings = tables["annotations"]
        tallies = Counter((r["question_id"], group, r["rating"]) for r in ratings for group in r["groups"])
        cells = Counter()
        for row in rows:
            if any(tallies[(row["question_id"], row["group"], option)] != count
                   for option, count in zip(row["options"], row["counts"])):
                cells[row["group"]] += 1
        stats["num_ratings"] = str(len(ratings))
        stats["num_annotators"] = str(len({r["annotator"] for r in ratings}))
        stats["num_mismatched_cells"] = str(sum(cells.values()))
        stats["mismatched_cells_by_group"] = ", ".join(f"{n} {group}" for group, n in sorted(cells.items())) or "none"
    return stats


def _size_category(num_rows: int) -> str:
    """The Hub's size category for a dataset whose largest config has ``num_rows`` rows.

    >>> [_size_category(n) for n in (599, 9048, 10_000, 250_000)]
    ['n<1K', '1K<n<10K', '10K<n<100K', '100K<n<1M']
    """
    bounds = ("1K", "10K", "100K", "1M")
    if num_rows < 1000:
        return "n<1K"
    for power, (low, high) in enumerate(zip(bounds, bounds[1:]), start=3):
        if num_rows < 10 ** (power + 1):
            return f"{low}<n<{high}"
    raise ValueError(f"{num_rows} rows: more than the size categories defined here (up to 1M)")


def render_card(name: str, infos: dict, tables: dict):
    """The ``huggingface_hub.DatasetCard`` of dataset ``name`` from its builders' infos and rows."""
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    default_info = infos["default"]
    card_data = DatasetCardData(
        pretty_name=PRETTY_NAMES[name],
        license=default_info.license,
        language=["en"],
        task_categories=["multiple-choice", "question-answering"],
        size_categories=[_size_category(max(len(rows) for rows in tables.values()))],
        tags=["distributional-alignment", "steerability", "survey", "opinions"],
        configs=[
            {
                "config_name": config,
                "data_files": [{"split": "test", "path": f"{config_dir(config)}/test-*.parquet"}],
                **({"default": True} if config == "default" else {}),
            }
            for config in infos
        ],
    )
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    cards = importlib.resources.files("distalign_data.cards")  # cards/, installed as package data
    template = string.Template((cards / f"{name}.md").read_text(encoding="utf-8")
                               + "\n" + (cards / COMMON_CARD).read_text(encoding="utf-8"))
    body = template.substitute(_card_statistics(name, tables), citation=default_info.citation)
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def build_folders(source=None, out: str | Path = DEFAULT_OUT, datasets=DATASETS, *, cache_dir=None) -> dict[str, Path]:
    """Build each dataset and write its Hub-ready folder under ``out``; returns name -> folder."""
    from distalign_data.benchmarks import builder_class, load_benchmark

    out = Path(out)
    folders = {}
    for name in datasets:
        folder = out / name
        infos, tables = {}, {}
        for config in builder_class(name).FILES:
            dataset = load_benchmark(name, config=config, source=source, cache_dir=cache_dir)
            target = folder / config_dir(config) / DATA_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(target))
            info = copy.deepcopy(dataset.info)
            # What a Hub user downloads is the Parquet file (the builder itself downloaded nothing).
            info.download_size = target.stat().st_size
            infos[config] = info
            tables[config] = dataset.to_list()
        render_card(name, infos, tables).save(str(folder / CARD_FILE))
        folders[name] = folder
    return folders


@dataclass(frozen=True)
class Upload:
    """One repository to push: its id and type, and the local files with their paths in the repo."""

    repo_id: str
    repo_type: str
    files: tuple[tuple[str, Path], ...]


def _folder_files(folder: Path) -> tuple[tuple[str, Path], ...]:
    return tuple(
        (path.relative_to(folder).as_posix(), path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part in _SKIPPED_PARTS for part in path.relative_to(folder).parts)
    )


def plan_release(out: str | Path = DEFAULT_OUT, datasets=DATASETS, *, metric_dir: str | Path | None = DEFAULT_METRIC_DIR,
                 namespace: str = NAMESPACE) -> list[Upload]:
    """What ``release`` would push; ``ReleaseError`` naming what is missing."""
    uploads = []
    for name in datasets:
        folder = Path(out) / name
        if not (folder / CARD_FILE).is_file():
            raise ReleaseError(f"{folder} is not a built dataset folder; run `distalign build --out {out}` first")
        uploads.append(Upload(f"{namespace}/{name}", "dataset", _folder_files(folder)))
    if metric_dir is not None:
        metric_dir = Path(metric_dir)
        if not (metric_dir / CARD_FILE).is_file():
            raise ReleaseError(f"{metric_dir} holds no metric module with a {CARD_FILE} card")
        uploads.append(Upload(f"{namespace}/{METRIC_SPACE}", "space", _folder_files(metric_dir)))
    return uploads


def release(out: str | Path = DEFAULT_OUT, datasets=DATASETS, *, dry_run: bool = False, api=None,
            metric_dir: str | Path | None = DEFAULT_METRIC_DIR, namespace: str = NAMESPACE) -> list[Upload]:
    """Push the built folders (and the metric Space) to the Hub with ``huggingface_hub``.

    ``dry_run`` only prints the plan. Otherwise ``HF_TOKEN`` must be set; ``api`` is an
    ``HfApi`` (default: a new one). Network failures raise ``ReleaseError``.
    """
    uploads = plan_release(out, datasets, metric_dir=metric_dir, namespace=namespace)
    if dry_run:
        for upload in uploads:
            size = sum(path.stat().st_size for _, path in upload.files)
            print(f"would push {len(upload.files)} files ({size:,} bytes) to {upload.repo_type} {upload.repo_id}:")
            for path_in_repo, path in upload.files:
                print(f"  {path_in_repo}  ({path.stat().st_size:,} bytes)")
        return uploads
    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise ReleaseError(f"set {TOKEN_VARIABLE} to a Hugging Face token with write access to {namespace}")
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api if api is not None else HfApi()
    for upload in uploads:
        try:
            api.create_repo(upload.repo_id, token=token, repo_type=upload.repo_type, exist_ok=True,
                            **({"space_sdk": "gradio"} if upload.repo_type == "space" else {}))
            api.create_commit(
                upload.repo_id,
                [CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(path)) for path_in_repo, path in upload.files],
                commit_message=f"distalign release (upstream {UPSTREAM_REPOSITORY}@{UPSTREAM_COMMIT[:7]})",
                token=token,
                repo_type=upload.repo_type,
            )
        except Exception as error:  # the Hub client raises many network/HTTP types; all mean the same here
            message = str(error).replace(token, "***")
            raise ReleaseError(f"could not push {upload.repo_type} {upload.repo_id} to the Hugging Face Hub "
                               f"({type(error).__name__}: {message})") from None
        print(f"pushed {len(upload.files)} files to {upload.repo_type} {upload.repo_id}")
    return uploads


def _build_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    folders = build_folders(args.source, args.out, args.datasets)
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    print(f"built {len(folders)} datasets in {time.perf_counter() - start:.1f} s")
    return 0


def _release_command(args: argparse.Namespace) -> int:
    release(args.out, args.datasets, dry_run=args.dry_run, metric_dir=args.metric_dir, namespace=args.namespace)
    return 0


def register_cli(subparsers) -> None:
    build = subparsers.add_parser("build", help="build the three datasets into Hub-ready folders")
    build.add_argument("--source", metavar="DIR", help="upstream directory (default: $DISTALIGN_SOURCE, else download)")
    build.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    build.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), metavar="NAME",
                       help=f"datasets to build (default: all of {', '.join(DATASETS)})")
    build.set_defaults(func=_build_command)
    push = subparsers.add_parser("release", help="push built folders and the metric Space to the Hugging Face Hub")
    push.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help="folder `distalign build` wrote")
    push.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), metavar="NAME")
    push.add_argument("--metric-dir", type=Path, default=DEFAULT_METRIC_DIR, help="the evaluate module folder")
    push.add_argument("--namespace", default=NAMESPACE, help=f"Hub user or organisation (default: {NAMESPACE})")
    push.add_argument("--dry-run", action="store_true", help="print what would be uploaded, push nothing")
    push.set_defaults(func=_release_command)
