"""``distalign reproduce``: the paper's tables from its released outputs, under both protocols.

The paper's outputs are imported once into a cached run directory (the same
records ``distalign import-paper`` writes), scored under the ``paper`` and the
``corrected`` protocol, and printed table by table: Table 1a (models and the
three baselines), Table 1b (KS gap), Table 2 (humans against models), the
per-dataset, per-steering tables (the shape of the paper's Tables 4, 8, 9 and
10) and the parse-failure rates. Each line shows the published value where the
paper has one (:mod:`distalign_data.paper_numbers`), the ``paper`` recomputation
and the ``corrected`` value; a flag with a one-line reason marks a recomputation
that misses the published number, and a corrected value that differs from the
``paper`` one by more than the latter's CI half-width.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from distalign_data.names import DATASET_TO_PAPER, DATASETS, PROTOCOLS, STEERING_METHODS
from distalign_data.paper_numbers import DEFAULT_TOLERANCE, HEADLINE, PUBLISHED, TOLERANCE, paper_table

TABLE_ORDER = ("1a", "1a_heldout_ts", "1b", "2", "4", "8", "9", "10", "dataset", "parse_failures")
TABLE_TITLES = {
    "1a": "Table 1a: persona + few-shot, three datasets weighted 1/3 (TV, lower is better)",
    "1a_heldout_ts": "Table 1a, temperature scaling held out: tau fitted on other questions (5 folds), not the test labels",
    "1b": "Table 1b: knowledge-to-simulation gap A(sequence)/A(verbalize) - 1 (percent)",
    "2": "Table 2: humans and models, OpinionQA and NYT weighted 1/2 (TV, lower is better)",
    "4": "Table 4: GlobalOpinionQA, persona + few-shot (published: only the values the protocol notes record)",
    "8": "Table 8: GlobalOpinionQA, persona (published: only the values the protocol notes record)",
    "9": "Table 9: GlobalOpinionQA, few-shot (published: only the values the protocol notes record)",
    "10": "Table 10: OpinionQA and NYT by steering (published: only the values the protocol notes record)",
    "dataset": "OpinionQA and NYT, persona + few-shot (no table in the paper)",
    "parse_failures": "Parse failures of the package's re-parse (percent of records, lower is better)",
}
# Files whose code decides what an import holds: a change invalidates the cached import.
_IMPORT_CODE = ("parsing.py", "paper_import.py", "human_baseline.py", "records.py", "temperature.py",
                "scoring.py", "distributions.py", "schema.py", "names.py")
_READY = "reproduce-complete"
_STEERING_ORDER = {label: i for i, label in enumerate((*STEERING_METHODS, HEADLINE))}


def _import_key(upstream, rows=None) -> str:
    from distalign_data import __version__
    from distalign_data.benchmarks import code_fingerprint
    from distalign_data.benchmarks import files_digest
    from distalign_data.sources import load_manifest

    digest = hashlib.sha256()
    digest.update(__version__.encode())
    # The records are mapped onto benchmark rows: the builders' code decides the
    # default rows, and rows passed in are hashed themselves.
    digest.update(code_fingerprint().encode())
    if rows is not None:
        digest.update(json.dumps(rows, sort_keys=True, default=str).encode())
    digest.update(load_manifest(upstream.manifest)["commit"].encode())
    digest.update(upstream.describe().encode())
    digest.update(files_digest(Path(__file__).parent / name for name in _IMPORT_CODE).encode())
    return digest.hexdigest()[:16]


def cached_import(source=None, *, cache_dir: str | os.PathLike | None = None, rows=None) -> Path:
    """The run directory of the imported paper outputs, imported on first use and cached after.

    The cache key covers the package version, the upstream commit and source, the
    importer's and the builders' code and any ``rows`` given, so a stale import is
    never reused.
    """
    from distalign_data.paper_import import import_paper_outputs
    from distalign_data.records import RecordStore
    from distalign_data.sources import resolve_source

    upstream = resolve_source(source)
    root = Path(cache_dir) if cache_dir is not None else upstream.cache / "paper-import"
    run_dir = root / _import_key(upstream, rows)
    if RecordStore(run_dir).manifest().get(_READY) if run_dir.exists() else False:
        return run_dir
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))
    try:
        store = import_paper_outputs(staging, source=upstream, rows=rows)
        store.update_manifest({_READY: True})
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(staging, run_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return run_dir


def _diagnostics(records, rows) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """Per (model, method, dataset, steering): counts behind a corrected-vs-paper difference."""
    from distalign_data.distributions import align
    from distalign_data.scoring import rows_by_id

    index = rows_by_id(rows)
    cells: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for record in records:
        cell = cells.setdefault((record.model, record.method, record.dataset, record.steering),
                                {"n": 0, "failed": 0, "reference": 0, "distribution": 0, "sum_gap": 0.0})
        cell["n"] += 1
        stored = (record.extra or {}).get("paper_distribution") or []
        stored_reference = (record.extra or {}).get("paper_reference")
        row = index[(record.dataset, record.row_id)]
        own_reference = align(row["options"], row["distribution"], record.options, drop_extra=True)
        if stored_reference is None or len(stored_reference) != len(own_reference) or max(
                abs(a - b) for a, b in zip(stored_reference, own_reference)) > 0.005:
            cell["reference"] += 1
        if record.distribution is None:
            cell["failed"] += 1
        elif len(stored) != len(record.distribution) or max(
                abs(a - b) for a, b in zip(stored, record.distribution)) > 0.005:
            cell["distribution"] += 1
        finite = [v for v in stored if v == v]
        # Stored vectors were never renormalised: zeroed values, truncation and over-full dicts move the sum off 1.
        cell["sum_gap"] += abs(1.0 - sum(finite)) if finite else 1.0
    return cells


_BASELINE_REASONS = {
    "uniform": "corrected: 1/K over every option of the row (paper: over the stored reference's letters)",
    "majority": "corrected: one-hot on the human mode (paper: on GPT-3.5's output)",
    "discretization": "corrected: every row's own reference, exact or seeded expectation (paper: stored references)",
}


def _difference_reason(row: dict[str, Any], cells) -> str:
    """One line on why the corrected value differs from the paper recomputation."""
    if row["model"] == "baseline":
        return _BASELINE_REASONS.get(row["method"], "")
    datasets = _datasets_of(row["dataset"])
    steerings = row["steering"].split("+")
    methods = ("sequence", "verbalize") if row["table"] == "1b" else (row["method"],)
    total = {"n": 0, "failed": 0, "reference": 0, "distribution": 0, "sum_gap": 0.0}
    for (model, method, dataset, steering), cell in cells.items():
        if model == row["model"] and method in methods and dataset in datasets and steering in steerings:
            for key in total:
                total[key] += cell[key]
    parts = []
    if total["reference"]:
        parts.append(f"{total['reference']}/{total['n']} stored references differ from the benchmark's")
    if "temperature_scaled_logprobs" in methods:
        parts.append("tau refitted NaN-safe on the re-parsed log-probs")
    if total["distribution"]:
        parts.append(f"{total['distribution']} re-parses differ from the stored vectors")
    if total["n"] and total["sum_gap"] / total["n"] > 0.005:
        parts.append(f"stored vectors' sums are {total['sum_gap'] / total['n']:.1%} off 1 on average "
                     "(the re-parse renormalises)")
    if total["failed"]:
        parts.append(f"{total['failed']} failed parses excluded")
    return "; ".join(parts) or "resampling noise"


def _datasets_of(label: str) -> tuple[str, ...]:
    if label == "all":
        return DATASETS
    by_paper = {paper: name for name, paper in DATASET_TO_PAPER.items()}
    return tuple(by_paper[part] for part in label.split("+"))


def _relabel(rows: list[dict[str, Any]], **values) -> list[dict[str, Any]]:
    return [{**row, **values} for row in rows]


def protocol_tables(records, rows, protocol: str, *, seed: int = 0, frame=None) -> list[dict[str, Any]]:
    """Every reproduced table row under one protocol (see :mod:`distalign_data.scoring`).

    ``frame`` is the score table of ``records`` when the caller has it already.
    """
    from distalign_data import scoring

    if frame is None:
        frame = scoring.score_records(records, rows, protocol)
    models = frame[frame["model"] != "humans"]
    baselines = scoring.baseline_scores(models, rows, protocol, records=records, seed=seed)
    out = scoring.leaderboard(models, table="1a", protocol=protocol, seed=seed)
    out += _relabel(scoring.leaderboard(baselines, table="1a", protocol=protocol, seed=seed,
                                        steerings=sorted(set(baselines["steering"]))),
                    steering=scoring.steering_label(set(models["steering"]) & set(scoring.HEADLINE_STEERINGS)))
    out += scoring.ks_gap_table(models, table="1b", protocol=protocol, seed=seed)
    out += scoring.leaderboard(frame, table="2", protocol=protocol, seed=seed,
                               datasets=("opinionqa_subset", "nyt_books"))
    for row in scoring.dataset_tables(models, protocol=protocol, seed=seed):
        out.append({**row, "table": paper_table(row["dataset"], row["steering"])})
    # The paper's per-dataset tables repeat each dataset's baselines under every steering.
    for dataset in sorted(set(baselines["dataset"])):
        label = scoring.dataset_label([dataset])
        board = scoring.leaderboard(baselines, table="", protocol=protocol, seed=seed, datasets=(dataset,),
                                    steerings=sorted(set(baselines["steering"])))
        covered = set(models.loc[models["dataset"] == dataset, "steering"])
        for steerings in scoring.DATASET_STEERINGS:
            if set(steerings) <= covered:
                steering = scoring.steering_label(steerings)
                out += _relabel(board, table=paper_table(label, steering), steering=steering)
    if protocol == "corrected":
        out += scoring.parse_failure_table(frame, seed=seed)
    return out


def _heldout_temperature_table(records, rows, *, seed: int) -> list[dict[str, Any]]:
    """Table 1a's temperature-scaled rows with τ fitted on other questions (k-fold) instead of the test labels."""
    from dataclasses import replace

    from distalign_data import scoring

    heldout = [replace(r, distribution=r.extra["heldout_distribution"]) for r in records
               if r.method == "temperature_scaled_logprobs" and (r.extra or {}).get("heldout_distribution") is not None]
    if not heldout:
        return []
    frame = scoring.score_records(heldout, rows, "corrected")
    return scoring.leaderboard(frame, table="1a_heldout_ts", protocol="corrected", seed=seed)


def _key(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (row["table"], row["dataset"], row["steering"], row["model"], row["method"])


def reproduce(source=None, *, protocols=PROTOCOLS, seed: int = 0, cache_dir=None, rows=None) -> list[dict[str, Any]]:
    """Import (cached), score and compare; returns every table row with ``published``, ``flag`` and ``reason``.

    ``flag`` is True on a ``paper`` row whose mean misses the published one by
    more than the tolerance (0.002; 0.5 points for the KS gap), and on a ``corrected`` row that
    differs from its ``paper`` counterpart by more than that row's CI
    half-width. ``reason`` says why. ``rows`` (dataset -> benchmark rows)
    defaults to :func:`distalign_data.benchmarks.load_rows` on the same source.
    """
    from distalign_data.benchmarks import load_rows
    from distalign_data.records import RecordStore
    from distalign_data.sources import resolve_source

    upstream = resolve_source(source)
    if rows is None:
        rows = {dataset: load_rows(dataset, source=upstream) for dataset in DATASETS}
    run_dir = cached_import(upstream, cache_dir=cache_dir, rows=rows)
    records = RecordStore(run_dir).records()
    # The corrected flags compare with the paper recomputation, so both are always computed.
    by_protocol = {protocol: protocol_tables(records, rows, protocol, seed=seed) for protocol in PROTOCOLS}
    by_protocol["corrected"] += _heldout_temperature_table(records, rows, seed=seed)
    paper_rows = {_key(row): row for row in by_protocol["paper"]}
    cells = _diagnostics(records, rows) if "corrected" in protocols else {}
    out = []
    for protocol in protocols:
        for row in by_protocol[protocol]:
            published = PUBLISHED.get(_key(row))
            row = {**row, "published": published[0] if published else None, "flag": False, "reason": "", "seed": seed}
            if protocol == "paper" and published is not None:
                tolerance = TOLERANCE.get(row["table"], DEFAULT_TOLERANCE)
                if abs(row["mean"] - published[0]) > tolerance:
                    row["flag"], row["reason"] = True, published[2] or "unexplained difference from the paper"
            elif protocol == "corrected" and _key(row) in paper_rows:
                reference = paper_rows[_key(row)]
                half = (reference["ci_high"] - reference["ci_low"]) / 2
                if abs(row["mean"] - reference["mean"]) > half:
                    row["flag"], row["reason"] = True, _difference_reason(row, cells)
            out.append(row)
    return out


def format_report(rows: list[dict[str, Any]]) -> str:
    """The tables as text: published, paper recomputation and corrected value side by side."""
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(_key(row), {})[row["protocol"]] = row
    lines = []
    for table in TABLE_ORDER:
        keys = [k for k in by_key if k[0] == table]
        if not keys:
            continue
        scale = 100.0 if table in ("1b", "parse_failures") else 1.0
        digits = 2 if scale == 100.0 else 3
        lines += ["", TABLE_TITLES[table], f"{'dataset':<18}{'steering':<22}{'model':<20}{'method':<29}"
                  f"{'published':>10}{'paper':>17}{'corrected':>17}  flag"]

        def order(key):
            pair = by_key[key]
            first = pair.get("paper") or pair.get("corrected")
            # Steerings in the paper's order (none, persona, few-shot, pooled), not alphabetically.
            return (key[1], _STEERING_ORDER.get(key[2], len(_STEERING_ORDER)), key[2], first["mean"])

        for key in sorted(keys, key=order):
            pair = by_key[key]
            cells, reasons = [], []
            for protocol in PROTOCOLS:
                row = pair.get(protocol)
                if row is None:
                    cells.append(f"{'-':>17}")
                    continue
                half = (row["ci_high"] - row["ci_low"]) / 2 * scale
                cells.append(f"{row['mean'] * scale:>10.{digits}f} ±{half:<5.{digits}f}")
                if row["flag"]:
                    reasons.append(f"[{protocol}] {row['reason']}")
            published = next((r["published"] for r in pair.values() if r.get("published") is not None), None)
            published_text = f"{published * scale:>10.{digits}f}" if published is not None else f"{'':>10}"
            lines.append(f"{key[1]:<18}{key[2]:<22}{key[3]:<20}{key[4]:<29}{published_text}{''.join(cells)}  "
                         + ("FLAG " + " | ".join(reasons) if reasons else ""))
    return "\n".join(lines).lstrip("\n")


def _run_reproduce(args) -> int:
    started = time.perf_counter()
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    rows = reproduce(args.source, protocols=protocols, seed=args.seed)
    print(format_report(rows))
    flagged = sum(row["flag"] for row in rows)
    print(f"\n{len(rows)} rows, {flagged} flagged; bootstrap seed {args.seed}; "
          f"{time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's tables from its released outputs",
        description="Import the paper's released outputs, score them under both protocols and print the tables.",
    )
    parser.add_argument("--source", default=None, help="upstream directory (default: $DISTALIGN_SOURCE or a download)")
    parser.add_argument("--protocol", choices=(*PROTOCOLS, "both"), default="both", help="protocol(s) to print")
    parser.add_argument("--json", default=None, help="write every table row to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.set_defaults(func=_run_reproduce)
