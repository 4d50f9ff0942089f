"""Score run records against benchmark rows, and build the paper's tables from the scores.

:func:`score_records` turns run records into a score table (one line per
record: total variation, lower is better) under one of the two protocols
(protocol notes, section 9):

* ``paper``: the upstream's *stored* parsed distribution against the reference
  vector it stored, position by position, as the paper scored them; a pair whose
  lengths differ, an empty reference or a NaN is dropped (``tv`` NaN), as the
  upstream did. A record without stored vectors (a new run) is scored the
  paper's way from its own distribution: the reference in the prompt's option
  order, a failed parse as an all-zero vector (TV ½·Σy = 0.5).
* ``corrected``: the package's re-parse, aligned with the reference by option
  text; failed parses get ``tv`` NaN, are left out of every mean and counted.

The table builders (:func:`leaderboard`, :func:`ks_gap_table`,
:func:`dataset_tables`, :func:`parse_failure_table`, :func:`baseline_scores`)
are shared by ``distalign score``, ``distalign reproduce`` and the report. Each
returns rows ``{table, dataset, steering, model, method, protocol, mean, ci_low,
ci_high, n}`` where ``dataset`` uses the paper's folder names
(``opinionqa|nytimes|globalvalues``, ``all`` for the three,
``opinionqa+nytimes``) and ``steering`` joins steering names with ``+``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from distalign_data.names import DATASET_TO_PAPER, DATASETS, PROTOCOLS, STEERING_METHODS

SCORE_COLUMNS = (
    "model", "dataset", "steering", "method", "row_id", "question_id",
    "group_attribute", "group", "protocol", "tv", "parse_status",
)
TABLE_KEYS = ("table", "dataset", "steering", "model", "method", "protocol", "mean", "ci_low", "ci_high", "n")
HEADLINE_STEERINGS = ("persona", "few_shot")
BASELINE_MODEL = "baseline"
BASELINE_METHODS = ("uniform", "majority", "discretization")
# The paper's baselines were built from one model's stored file per dataset (protocol section 6).
PAPER_BASELINE_SOURCE = {
    "opinionqa_subset": ("gpt-3.5-turbo-0125", "sequence", "none"),
    "nyt_books": ("gpt-3.5-turbo-0125", "sequence", "none"),
    "global_opinionqa_contentious": ("gpt-3.5-turbo-0125", "sequence", "persona"),
}
DEFAULT_SEED = 0


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def rows_by_id(rows) -> dict[str, dict[str, Any]]:
    """Index benchmark rows (an iterable, or a mapping dataset -> rows) by ``(dataset, id)``."""
    groups = rows.values() if isinstance(rows, Mapping) else [rows]
    return {(row["dataset"], row["id"]): row for group in groups for row in group}


def _tv_batch(y_true: list, y_pred: list) -> np.ndarray:
    from distalign_data.distributions import total_variation

    if not y_true:
        return np.empty(0)
    # Both protocols score the vectors as given: the paper's stored vectors are
    # not normalised, and the corrected ones are normalised by the parsers.
    return total_variation(y_true, y_pred, check_sum=False)


def score_records(records: Iterable, rows, protocol: str):
    """Score table of ``records`` (RunRecords) against ``rows`` under ``protocol``.

    Returns a ``pandas.DataFrame`` with :data:`SCORE_COLUMNS`, one line per
    record; ``tv`` is NaN where the protocol does not score the record (a failed
    parse under ``corrected``, a dropped pair under ``paper``). Lower is better.
    A record whose row is missing from ``rows`` raises ``ValueError``.
    """
    import pandas as pd

    _check_protocol(protocol)
    index = rows_by_id(rows)
    meta, y_true, y_pred, scored = [], [], [], []
    for record in records:
        row = index.get((record.dataset, record.row_id))
        if row is None:
            raise ValueError(f"record {record.row_id!r} ({record.dataset}): no such benchmark row")
        meta.append((record.model, record.dataset, record.steering, record.method, record.row_id,
                     record.question_id, record.group_attribute, record.group, protocol, record.parse_status))
        pair = scored_pair(record, row, protocol)
        if pair is None:
            continue
        scored.append(len(meta) - 1)
        y_true.append(pair[0])
        y_pred.append(pair[1])
    tv = np.full(len(meta), np.nan)
    tv[scored] = _tv_batch(y_true, y_pred)
    frame = pd.DataFrame(meta, columns=[c for c in SCORE_COLUMNS if c != "tv"])
    frame.insert(SCORE_COLUMNS.index("tv"), "tv", tv)
    return frame


def scored_pair(record, row, protocol: str):
    """The ``(reference, prediction)`` vectors ``protocol`` compares for one record, or None when it does not score it.

    ``corrected``: the row's reference and the parsed distribution aligned to the
    row's options by text (None for a failed parse). ``paper``: the upstream's
    stored vectors position by position (None for a pair the paper dropped).
    """
    return _paper_pair(record, row) if protocol == "paper" else _corrected_pair(record, row)


def _finite_vector(values) -> bool:
    return bool(values) and all(v is not None and math.isfinite(v) for v in values)


def _paper_pair(record, row):
    extra = record.extra or {}
    if "paper_distribution" in extra:
        predicted, reference = extra["paper_distribution"], extra.get("paper_reference")
        if not reference or len(predicted) != len(reference):
            return None
        if not (_finite_vector(predicted) and _finite_vector(reference)):
            return None
        return reference, predicted
    from distalign_data.distributions import align

    reference = align(row["options"], row["distribution"], record.options, drop_extra=True)
    predicted = record.distribution if record.distribution is not None else [0.0] * len(record.options)
    return reference, predicted


def _corrected_pair(record, row):
    from distalign_data.distributions import align

    if record.parse_status == "failed" or record.distribution is None:
        return None
    return row["distribution"], align(record.options, record.distribution, row["options"])


# ---------------------------------------------------------------------------
# baselines


def baseline_scores(frame, rows, protocol: str, *, records: Iterable | None = None, seed: int = DEFAULT_SEED):
    """Score table of the three baselines (model ``baseline``, methods uniform / majority / discretization).

    ``corrected``: from the references of every row the score table ``frame``
    covers, with :mod:`distalign_data.baselines` (human-mode majority vote,
    discretization error of 30 draws, ``seed`` recorded). ``paper``: the paper's
    constructions from the stored vectors of the records it used (GPT-3.5
    sequence, no steering for OpinionQA and NYT, persona for GV): uniform over
    the stored reference's length, a one-hot on the *model's* mode, and 1,000
    seeded draws of 30 from the stored reference. ``records`` is needed for
    ``paper``. Steering is labelled as the source records' (``none`` for
    ``corrected``).
    """
    import pandas as pd

    from distalign_data import baselines

    _check_protocol(protocol)
    lines = []
    if protocol == "corrected":
        index = rows_by_id(rows)
        for dataset in sorted(set(frame["dataset"])):
            ids = sorted(set(frame.loc[frame["dataset"] == dataset, "row_id"]))
            chosen = [index[(dataset, row_id)] for row_id in ids]
            references = [row["distribution"] for row in chosen]
            predictions = {
                "uniform": baselines.uniform_baseline(references, atol=1e-5),
                "majority": baselines.majority_vote_baseline(references, atol=1e-5),
            }
            scores = {method: _tv_batch(references, predicted) for method, predicted in predictions.items()}
            # Seeded Monte Carlo: exact enumeration costs seconds on the 5- and 6-option rows.
            scores["discretization"] = baselines.discretization_error(
                references, method="monte_carlo", seed=seed, atol=1e-5).tv
            for method, tv in scores.items():
                lines.extend((BASELINE_MODEL, dataset, "none", method, row["id"], row["question_id"],
                              row["group_attribute"], row["group"], protocol, float(value), "ok")
                             for row, value in zip(chosen, tv))
    else:
        if records is None:
            raise ValueError("baseline_scores(protocol='paper') needs the records the paper built its baselines from")
        chosen = {dataset: [] for dataset in PAPER_BASELINE_SOURCE}
        for record in records:
            source = PAPER_BASELINE_SOURCE.get(record.dataset)
            if source != (record.model, record.method, record.steering):
                continue
            extra = record.extra or {}
            reference, predicted = extra.get("paper_reference"), extra.get("paper_distribution")
            if not reference or not _finite_vector(reference) or sum(reference) <= 0:
                continue
            chosen[record.dataset].append((record, reference, predicted))
        for dataset, items in chosen.items():
            if not items:
                continue
            references = [reference for _, reference, _ in items]
            uniform = [[1.0 / len(r)] * len(r) for r in references]
            majority_items = [(i, r, p) for i, (_, r, p) in enumerate(items) if p and len(p) == len(r) and _finite_vector(p)]
            majority = [np.eye(len(r))[int(np.argmax(p))] for _, r, p in majority_items]
            # Stored GV references are rounded (sums up to 1.001); the sampler needs exact sums.
            normalised = [np.asarray(r, dtype=float) / sum(r) for r in references]
            draws = baselines.discretization_error(normalised, method="monte_carlo", seed=seed).tv
            per_method = {
                "uniform": (items, _tv_batch(references, uniform)),
                "majority": ([items[i] for i, _, _ in majority_items],
                             _tv_batch([r for _, r, _ in majority_items], majority)),
                "discretization": (items, draws),
            }
            for method, (used, tv) in per_method.items():
                lines.extend((BASELINE_MODEL, dataset, record.steering, method, record.row_id, record.question_id,
                              record.group_attribute, record.group, protocol, float(value), "ok")
                             for (record, _, _), value in zip(used, tv))
    return pd.DataFrame(lines, columns=list(SCORE_COLUMNS))


# ---------------------------------------------------------------------------
# tables


def dataset_label(datasets: Iterable[str]) -> str:
    """The paper's name for a set of datasets: one folder name, ``a+b``, or ``all`` for the three.

    >>> dataset_label(["nyt_books", "opinionqa_subset"])
    'opinionqa+nytimes'
    """
    chosen = [d for d in DATASETS if d in set(datasets)]
    if len(chosen) == len(DATASETS):
        return "all"
    order = ("opinionqa_subset", "nyt_books", "global_opinionqa_contentious")
    return "+".join(DATASET_TO_PAPER[d] for d in order if d in chosen)


def steering_label(steerings: Iterable[str]) -> str:
    chosen = set(steerings)
    return "+".join(s for s in STEERING_METHODS if s in chosen)


def _row(table, datasets, steerings, model, method, protocol, result) -> dict[str, Any]:
    return {
        "table": table,
        "dataset": dataset_label(datasets),
        "steering": steering_label(steerings),
        "model": model,
        "method": method,
        "protocol": protocol,
        "mean": float(result.mean),
        "ci_low": float(result.ci_low),
        "ci_high": float(result.ci_high),
        "n": int(result.n) if hasattr(result, "n") else int(result.n_sequence + result.n_verbalize),
    }


def _score_sets(frame, datasets, steerings) -> dict[tuple[str, str], tuple[dict[str, np.ndarray], set[str]]]:
    """(model, method) -> (dataset -> scored TVs, steerings present), over the given datasets and steerings."""
    chosen = frame[frame["dataset"].isin(list(datasets)) & frame["steering"].isin(list(steerings)) & frame["tv"].notna()]
    sets: dict[tuple[str, str], tuple[dict[str, np.ndarray], set[str]]] = {}
    for (model, method, dataset), group in chosen.groupby(["model", "method", "dataset"], sort=True):
        scores, present = sets.setdefault((model, method), ({}, set()))
        scores[dataset] = group["tv"].to_numpy()
        present.update(group["steering"])
    return sets


def leaderboard(frame, *, table: str, protocol: str, datasets: Iterable[str] = DATASETS,
                steerings: Iterable[str] = HEADLINE_STEERINGS, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Mean TV per (model, method) over ``datasets`` weighted equally (each resampled separately).

    Under ``paper`` the mean is the mean of the bootstrap statistics, as
    published; under ``corrected`` the sample mean. A (model, method) that
    covers only some of the datasets or steerings is reported over those, and
    its ``dataset`` and ``steering`` labels say which. Sorted best (lowest) first.
    """
    from distalign_data.statistics import bootstrap_mean_ci

    datasets, steerings = tuple(datasets), tuple(steerings)
    out = []
    for (model, method), (sets, present) in _score_sets(frame, datasets, steerings).items():
        result = bootstrap_mean_ci(sets, protocol=protocol, seed=seed)
        out.append(_row(table, sets, present, model, method, protocol, result))
    return sorted(out, key=lambda r: r["mean"])


def ks_gap_table(frame, *, table: str, protocol: str, datasets: Iterable[str] = DATASETS,
                 steerings: Iterable[str] = HEADLINE_STEERINGS, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Knowledge-to-simulation gap A(sequence)/A(verbalize) − 1 per model (method ``sequence``).

    ``paper``: the ratio of the two Table-1a bootstrap means, each method
    resampled on its own, as the paper did. ``corrected``: paired over the rows
    both methods scored (ratio of sample means).
    """
    from distalign_data.statistics import ks_gap

    datasets, steerings = tuple(datasets), tuple(steerings)
    chosen = frame[frame["dataset"].isin(list(datasets)) & frame["steering"].isin(list(steerings)) & frame["tv"].notna()]
    out = []
    for model in sorted(set(chosen["model"])):
        mine = chosen[chosen["model"] == model]
        seq = mine[mine["method"] == "sequence"]
        verb = mine[mine["method"] == "verbalize"]
        if seq.empty or verb.empty:
            continue
        if protocol == "paper":
            sets_seq = {d: g["tv"].to_numpy() for d, g in seq.groupby("dataset")}
            sets_verb = {d: g["tv"].to_numpy() for d, g in verb.groupby("dataset")}
            if sets_seq.keys() != sets_verb.keys():
                continue
            result = ks_gap(sets_seq, sets_verb, paired=False, protocol=protocol, seed=seed)
        else:
            keys = ["dataset", "steering", "row_id"]
            both = seq[keys + ["tv"]].merge(verb[keys + ["tv"]], on=keys, suffixes=("_seq", "_verb"))
            if both.empty:
                continue
            sets_seq = {d: g["tv_seq"].to_numpy() for d, g in both.groupby("dataset")}
            sets_verb = {d: g["tv_verb"].to_numpy() for d, g in both.groupby("dataset")}
            result = ks_gap(sets_seq, sets_verb, paired=True, protocol=protocol, seed=seed)
        out.append(_row(table, sets_seq, set(seq["steering"]) & set(verb["steering"]), model, "sequence", protocol,
                        result))
    return sorted(out, key=lambda r: r["mean"])


DATASET_STEERINGS = (("none",), ("persona",), ("few_shot",), HEADLINE_STEERINGS)


def dataset_tables(frame, *, protocol: str, seed: int = DEFAULT_SEED, table: str = "dataset") -> list[dict[str, Any]]:
    """One leaderboard per dataset and steering (no steering, persona, few-shot, persona+few-shot).

    The shape of the paper's Tables 4, 8, 9 (GV) and 10 (OpinionQA, NYT).
    Combinations the frame does not cover are left out.
    """
    out = []
    for dataset in [d for d in DATASETS if d in set(frame["dataset"])]:
        present = set(frame.loc[frame["dataset"] == dataset, "steering"])
        for steerings in DATASET_STEERINGS:
            # The pooled table only where both of its steerings were run.
            if set(steerings) <= present:
                out.extend(leaderboard(frame, table=table, protocol=protocol, datasets=(dataset,),
                                       steerings=steerings, seed=seed))
    return out


def parse_failure_table(frame, *, table: str = "parse_failures", seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Share of records whose parse failed (a fraction), per model, method and steering over every dataset (lower is better).

    One row per steering method, so ``steering`` is always a single steering
    name. ``protocol`` is ``corrected``: only the package's re-parse has a status.
    """
    from distalign_data.statistics import bootstrap_mean_ci

    out = []
    for (model, method, steering), group in frame.groupby(["model", "method", "steering"], sort=True):
        failed = (group["parse_status"] == "failed").to_numpy(dtype=float)
        result = bootstrap_mean_ci(failed, protocol="corrected", seed=seed)
        out.append(_row(table, set(group["dataset"]), {steering}, model, method, "corrected", result))
    return sorted(out, key=lambda r: (-r["mean"], r["model"], r["method"], r["steering"]))


def format_rows(rows: list[dict[str, Any]], *, percent: bool = False) -> str:
    """Plain-text table of table rows (model, method, datasets, steering, mean ± half-width, n), columns as wide as their text."""
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text_columns = ("model", "method", "dataset", "steering")
    widths = {c: max([len(c)] + [len(str(row[c])) for row in rows]) for c in text_columns}
    header = " ".join(f"{c:<{widths[c]}}" for c in text_columns)
    lines = [f"{header} {'mean':>9} {'±':>7} {'n':>6}"]
    for row in rows:
        half = (row["ci_high"] - row["ci_low"]) / 2
        labels = " ".join(f"{str(row[c]):<{widths[c]}}" for c in text_columns)
        lines.append(f"{labels} {row['mean'] * scale:>8.3f}{unit} {half * scale:>7.3f} {row['n']:>6}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# CLI


def _run_score(args) -> int:
    import json

    from distalign_data.benchmarks import load_rows
    from distalign_data.records import RecordStore

    store = RecordStore(args.run_dir)
    records = store.records()
    if not records:
        raise SystemExit(f"{args.run_dir}: no run records")
    datasets = sorted({r.dataset for r in records})
    rows = {dataset: load_rows(dataset, source=args.source) for dataset in datasets}
    frame = score_records(records, rows, args.protocol)
    present = set(frame["steering"])
    steerings = tuple(s for s in HEADLINE_STEERINGS if s in present) or tuple(s for s in STEERING_METHODS if s in present)
    board = leaderboard(frame, table="leaderboard", protocol=args.protocol, datasets=datasets,
                        steerings=steerings, seed=args.seed)
    failures = parse_failure_table(score_records(records, rows, "corrected"), seed=args.seed)
    print(f"{args.run_dir}: {len(records)} records; protocol {args.protocol}; datasets {dataset_label(datasets)}; "
          f"steering {steering_label(steerings)}; bootstrap seed {args.seed}; TV, lower is better")
    print(format_rows(board))
    print("\nparse failures (share of records, lower is better)")
    print(format_rows(failures))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(board + failures, handle, indent=1)
    return 0


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="print the leaderboard of a run directory",
        description="Score a run directory's records (total variation, lower is better) and print the leaderboard.",
    )
    parser.add_argument("run_dir", help="run directory (records.jsonl + manifest.json)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="corrected", help="scoring protocol (default: corrected)")
    parser.add_argument("--source", default=None, help="upstream directory for the benchmark rows")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default: 0)")
    parser.add_argument("--json", default=None, help="also write the table rows to this JSON file")
    parser.set_defaults(func=_run_score)
