"""``distalign report``: every table and figure of the benchmark for a run or a set of runs.

:func:`build_report` reads the run records of one or more run directories (new
model runs, the import of the paper's outputs with its human baseline, coin
runs), scores them once (:func:`distalign_data.scoring.score_records`) and
writes, under ``out_dir``:

* ``tables/<name>.<format>`` for each format (md, csv, tex, json): the tables
  that ``distalign reproduce`` shares (Table 1a leaderboard with baselines,
  Table 1b knowledge-to-simulation gap, per dataset × steering as in Tables 4,
  8, 9 and 10, Table 2, parse failures) and the report's own: per group
  (disaggregated), follow rate, temperature (oracle and held-out τ), paired
  bootstrap significance (few-shot vs persona, verbalize vs sequence) and the
  biased coin;
* ``figures/<name>.png`` and ``.pdf``: Figure 4, 5, 6 and 2 shapes
  (:mod:`distalign_data.plots`);
* ``index.html`` showing every table and figure, and ``report.json`` listing the
  inputs, options and files.

Every bootstrap takes ``seed``; TV is lower-is-better throughout.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from distalign_data.names import DATASETS
from distalign_data.names import PAPER_TO_DATASET
from distalign_data.names import PROTOCOLS
from distalign_data.names import STEERING_METHODS
from distalign_data.records import RecordStore
from distalign_data.records import RunRecord
from distalign_data.statistics import DEFAULT_RESAMPLES
from distalign_data.temperature import HELDOUT_FOLDS
from distalign_data.temperature import REFERENCE_ATOL

# Steering methods the headline tables pool (the paper's Table 1a pool).
STEERED = ("persona", "few_shot")
# The comparisons the paper draws, tested by paired bootstrap: (factor, a, b) means A(a) − A(b).
COMPARISONS = (("steering", "few_shot", "persona"), ("method", "verbalize", "sequence"))
SCORE_KEYS = ("model", "dataset", "steering", "method", "row_id")


def load_run_records(run_dirs: Sequence[str | Path]) -> tuple[list[RunRecord], dict[str, Any]]:
    """The records of every run directory, each key once (the first run listed wins), and facts about them.

    Raises ValueError naming a directory that holds no records.
    """
    records: list[RunRecord] = []
    seen: set[str] = set()
    info: dict[str, Any] = {"runs": [], "duplicates_dropped": 0}
    for run_dir in run_dirs:
        path = Path(run_dir)
        if not (path / "records.jsonl").is_file():
            raise ValueError(f"run directory {str(path)!r} has no records.jsonl")
        store = RecordStore(path)
        loaded = store.records()
        fresh = []
        for record in loaded:
            key = record.key
            if key not in seen:
                seen.add(key)
                fresh.append(record)
        info["duplicates_dropped"] += len(loaded) - len(fresh)
        manifest = store.manifest()
        info["runs"].append(
            {
                "run_dir": str(path),
                "records": len(loaded),
                "models": sorted({r.model for r in loaded}),
                "seed": manifest.get("seed"),
                "experiment": manifest.get("experiment"),
            }
        )
        records += fresh
    return records, info


def _cell_rows(frame, by: Sequence[str]) -> Iterable[tuple[tuple, Any]]:
    """Groups of a score frame with a usable TV, each sorted by row id (so a seeded bootstrap does not depend on record order)."""
    scored = frame[frame["tv"].notna()]
    for key, part in scored.groupby(list(by), sort=True):
        yield (key if isinstance(key, tuple) else (key,)), part.sort_values("row_id", kind="stable")


def per_group_table(frame, *, protocol: str, seed: int, n_resamples: int = DEFAULT_RESAMPLES) -> list[dict[str, Any]]:
    """Mean TV with bootstrap CI per model × method × steering × dataset × group (disaggregated)."""
    from distalign_data.statistics import bootstrap_mean_ci

    by = ("model", "method", "steering", "dataset", "group_attribute", "group")
    out = []
    for key, part in _cell_rows(frame, by):
        result = bootstrap_mean_ci(part["tv"].to_numpy(), protocol=protocol, n_resamples=n_resamples, seed=seed)
        out.append(
            {
                "table": "per_group",
                **dict(zip(by, key)),
                "protocol": protocol,
                "mean": result.mean,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "n": result.n,
            }
        )
    return out


def follow_rate_table(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """Per model × method × steering × dataset: how many outputs followed the format (``ok``), needed a repair, or failed.

    ``follow_rate`` = ok / n and ``usable_rate`` = (ok + repaired) / n; higher is better.
    """
    counts: dict[tuple, Counter] = {}
    for record in records:
        key = (record.model, record.method, record.steering, record.dataset)
        counts.setdefault(key, Counter())[record.parse_status] += 1
    out = []
    for (model, method, steering, dataset), count in sorted(counts.items()):
        n = sum(count.values())
        out.append(
            {
                "table": "follow_rate",
                "model": model,
                "method": method,
                "steering": steering,
                "dataset": dataset,
                "n": n,
                "ok": count["ok"],
                "repaired": count["repaired"],
                "failed": count["failed"],
                "follow_rate": count["ok"] / n,
                "usable_rate": (count["ok"] + count["repaired"]) / n,
            }
        )
    return out


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values for multiple comparisons (family-wise error).

    >>> [round(p, 3) for p in holm_adjust([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_scores(frame, *, factor: str, a: str, b: str, within: Mapping[str, str]) -> dict[str, tuple[Any, Any]]:
    """Per dataset, the TVs of level ``a`` and ``b`` of ``factor`` on the rows both scored, in the same order.

    ``within`` fixes other columns (e.g. ``{"model": "gpt-4", "method": "sequence"}``);
    rows are matched on every remaining key column, so a pair is the same row,
    model and (for the steering comparison) method.
    """
    scored = frame[frame["tv"].notna()]
    for column, value in within.items():
        scored = scored[scored[column] == value]
    keys = [k for k in SCORE_KEYS if k != factor]
    left = scored[scored[factor] == a].set_index(keys)["tv"]
    right = scored[scored[factor] == b].set_index(keys)["tv"]
    common = left.index.intersection(right.index).sort_values()
    out = {}
    for dataset in sorted(set(common.get_level_values("dataset"))):
        index = common[common.get_level_values("dataset") == dataset]
        out[dataset] = (left.loc[index].to_numpy(), right.loc[index].to_numpy())
    return out


def significance_table(frame, *, seed: int, n_resamples: int = DEFAULT_RESAMPLES) -> list[dict[str, Any]]:
    """Paired bootstrap of the paper's comparisons, per model: few-shot vs persona, verbalize vs sequence.

    Few-shot vs persona pairs each row under both steering methods, per
    expression method and over all methods; verbalize vs sequence pairs each
    row under both methods, per steering method and over persona + few-shot.
    Datasets weigh equally (mean of dataset means, each resampled separately).
    ``difference`` = A(a) − A(b): negative means ``a`` is better (TV, lower is
    better). ``p_holm`` adjusts the p-values of the whole table (Holm).
    """
    from distalign_data.statistics import paired_bootstrap

    steered = frame[frame["steering"].isin(STEERED)]
    out = []
    for factor, a, b in COMPARISONS:
        other = "method" if factor == "steering" else "steering"
        for model in sorted(steered["model"].unique()):
            levels = sorted(steered.loc[steered["model"] == model, other].unique())
            for level in [None] + levels:
                within = {"model": model} if level is None else {"model": model, other: level}
                pairs = paired_scores(steered, factor=factor, a=a, b=b, within=within)
                if not pairs:
                    continue
                result = paired_bootstrap(
                    {d: p[0] for d, p in pairs.items()}, {d: p[1] for d, p in pairs.items()},
                    n_resamples=n_resamples, seed=seed,
                )
                out.append(
                    {
                        "table": "significance",
                        "comparison": f"{a} vs {b}",
                        "model": model,
                        # The factor compared is fixed by the comparison; the other is pooled ("all") or held fixed.
                        "method": f"{a}, {b}" if factor == "method" else ("all" if level is None else level),
                        "steering": f"{a}, {b}" if factor == "steering" else ("all" if level is None else level),
                        "datasets": ",".join(pairs),
                        "mean_a": result.mean_a,
                        "mean_b": result.mean_b,
                        "difference": result.mean,
                        "ci_low": result.ci_low,
                        "ci_high": result.ci_high,
                        "p_value": result.p_value,
                        "n_pairs": result.n,
                    }
                )
    for row, adjusted in zip(out, holm_adjust([r["p_value"] for r in out])):
        row["p_holm"] = adjusted
    return out


def _row_distribution(record: RunRecord, row: Mapping[str, Any]):
    """A parsed record's distribution on its row's options (by option text), as the corrected protocol scores it."""
    from distalign_data.scoring import scored_pair

    return scored_pair(record, row, "corrected")[1]


def likert_marginals(
    records: Iterable[RunRecord],
    rows: Sequence[Mapping[str, Any]],
    *,
    groups: Sequence[str] = ("Democrat", "Republican"),
    steerings: Sequence[str] = STEERED,
) -> list[dict[str, Any]]:
    """Figure 5 data: per model × method × steering × group, the mean over books of each rating's probability.

    ``rows`` are NYT benchmark rows; the human reference (``source`` ``"human"``,
    ``method`` empty) is the mean of the rows' reference distributions.
    Distributions are taken on the row's options by option text. Returns rows
    ``model, method, source, group, option, probability, n``.
    """
    import numpy as np

    by_id = {row["id"]: row for row in rows}
    cells: dict[tuple[str, str, str, str], list] = {}
    for record in records:
        row = by_id.get(record.row_id)
        if record.dataset != "nyt_books" or row is None or record.distribution is None:
            continue
        if record.group not in groups or record.steering not in steerings:
            continue
        cells.setdefault((record.model, record.method, record.steering, record.group), []).append(
            _row_distribution(record, row)
        )
    out = []
    for group in groups:
        references = [np.asarray(r["distribution"], dtype=float) for r in rows if r["group"] == group]
        if references:
            options = next(r["options"] for r in rows if r["group"] == group)
            out += _marginal_rows("", "", "human", group, options, references)
    for (model, method, steering, group), dists in sorted(cells.items()):
        options = next(r["options"] for r in rows if r["group"] == group)
        out += _marginal_rows(model, method, steering, group, options, dists)
    return out


def _marginal_rows(model: str, method: str, source: str, group: str, options: Sequence[str], dists: list) -> list[dict[str, Any]]:
    import numpy as np

    stacked = np.vstack(dists)
    means = np.nanmean(stacked, axis=0)
    n = int(np.isfinite(stacked).all(axis=1).sum())
    return [
        {"model": model, "method": method, "source": source, "group": group, "option": option, "probability": float(p), "n": n}
        for option, p in zip(options, means)
    ]


CALIBRATION_BINS = 10


def temperature_table(cells: Mapping[tuple, Any], *, protocol: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, list]]]:
    """Fitted τ per model × dataset × steering: the paper's oracle fit and the held-out k-fold fit.

    ``cells`` are :func:`distalign_data.temperature.fit_cell_temperatures`'s
    fits. Returns the table rows and, per model, the pooled (reference, raw,
    oracle-scaled, held-out-scaled) predictions for the calibration figure.
    ``tv_*`` are mean TVs on the usable rows (lower is better); ``ece_*`` the
    expected calibration error (lower is better).
    """
    import numpy as np

    from distalign_data.distributions import total_variation
    from distalign_data.temperature import PAPER_BOUNDS
    from distalign_data.temperature import apply_temperature
    from distalign_data.temperature import expected_calibration_error

    out = []
    pooled: dict[str, dict[str, list]] = {}
    for (model, dataset, steering), cell in sorted(cells.items()):
        row = {"table": "temperature", "model": model, "dataset": dataset, "steering": steering, "protocol": protocol,
               "n_rows": len(cell.predictions), "n_usable": len(cell.usable)}
        oracle, held = cell.oracle, cell.heldout
        if oracle is None:
            out.append(row)
            continue
        refs = [cell.references[i] for i in cell.usable]
        raw = [cell.predictions[i] / cell.predictions[i].sum() for i in cell.usable]
        scaled = apply_temperature(raw, oracle.tau)
        row.update(tau_oracle=oracle.tau, oracle_at_bound=oracle.at_bound, bounds=f"({PAPER_BOUNDS[0]:g}, {PAPER_BOUNDS[1]:g})",
                   tv_raw=float(np.mean(total_variation(refs, raw, atol=REFERENCE_ATOL))), tv_oracle=float(np.mean(total_variation(refs, scaled, atol=REFERENCE_ATOL))))
        if held is not None:
            held_scaled = [held.scaled[i] for i in cell.usable]
            row.update(tau_heldout_mean=float(np.mean(held.taus)), tau_heldout_min=float(min(held.taus)),
                       tau_heldout_max=float(max(held.taus)), n_folds=held.n_folds, fold_seed=held.seed,
                       tv_heldout=float(np.mean(total_variation(refs, held_scaled, atol=REFERENCE_ATOL))))
        row["ece_raw"] = expected_calibration_error(refs, raw, n_bins=CALIBRATION_BINS, atol=REFERENCE_ATOL).ece
        row["ece_oracle"] = expected_calibration_error(refs, scaled, n_bins=CALIBRATION_BINS, atol=REFERENCE_ATOL).ece
        if held is not None:
            row["ece_heldout"] = expected_calibration_error(refs, held_scaled, n_bins=CALIBRATION_BINS, atol=REFERENCE_ATOL).ece
        out.append(row)
        bucket = pooled.setdefault(model, {"ref": [], "raw": [], "oracle": [], "heldout_ref": [], "heldout": []})
        bucket["ref"] += refs
        bucket["raw"] += raw
        bucket["oracle"] += list(scaled)
        if held is not None:
            bucket["heldout_ref"] += refs
            bucket["heldout"] += held_scaled
    return out, pooled


def calibration_bins(pooled: Mapping[str, Mapping[str, list]]) -> list[dict[str, Any]]:
    """Figure 6 data: reliability-curve bins per model, before and after temperature scaling."""
    from distalign_data.temperature import expected_calibration_error

    out = []
    variants = (("raw", "ref", "raw"), ("oracle τ", "ref", "oracle"), ("held-out τ", "heldout_ref", "heldout"))
    for model, bucket in sorted(pooled.items()):
        for name, ref_key, pred_key in variants:
            if not bucket[pred_key]:
                continue
            result = expected_calibration_error(bucket[ref_key], bucket[pred_key], n_bins=CALIBRATION_BINS, atol=REFERENCE_ATOL)
            for b, count in enumerate(result.bin_counts):
                out.append({"model": model, "variant": name, "bin_low": float(result.bin_edges[b]),
                            "bin_high": float(result.bin_edges[b + 1]), "mean_predicted": float(result.mean_predicted[b]),
                            "mean_observed": float(result.mean_reference[b]), "count": int(count), "ece": result.ece})
    return out


_TABLE_TEXT = {
    "per_group": ("Per group (disaggregated): mean TV by model × method × steering × dataset × group",
                  "Mean total variation over the group's questions with a 95% bootstrap CI (lower is better)."),
    "follow_rate": ("Format following: parse statuses by model × method × steering × dataset",
                    "ok = followed the requested format; repaired = usable after a documented repair; failed = unusable "
                    "(excluded from every mean). follow_rate = ok / n, usable_rate = (ok + repaired) / n; higher is better."),
    "temperature": ("Temperature scaling of log-prob distributions: fitted τ per model × dataset × steering",
                    "Oracle: one τ fitted on the test labels themselves (the paper's protocol, an upper bound). Held-out: "
                    f"{HELDOUT_FOLDS}-fold over questions, each question scaled with the τ of the other folds (mean, min and "
                    "max of the fold τ). τ searched by bounded Brent search in the bounds shown; oracle_at_bound flags a τ "
                    "at a bound. tv_* mean TV (raw = log-probs renormalised over the options), ece_* expected calibration "
                    "error (10 bins); lower is better."),
    "significance": ("Paired bootstrap significance of the paper's comparisons",
                     "difference = A(a) − A(b) on the rows scored by both (mean of dataset means, datasets resampled "
                     "separately); negative means a is better (TV, lower is better). p_value: two-sided paired bootstrap; "
                     "p_holm: Holm-adjusted over the whole table."),
    "coin": ("Biased coin: stated versus expressed P(heads)",
             "expressed_p is the mean P(heads) over the samples that parsed (sd over samples); abs_error = |expressed − stated|."),
}


def _table(name: str, rows: list[dict[str, Any]]):
    from distalign_data.report_writers import Table

    title, caption = _TABLE_TEXT[name]
    return Table(name, title, rows, caption)


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    formats: Sequence[str] = ("md", "csv", "tex", "json"),
    protocol: str = "corrected",
    seed: int = 0,
    *,
    source: str | Path | None = None,
    rows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score the records of ``run_dirs`` and write every table, figure and ``index.html`` under ``out_dir``.

    ``rows`` are the benchmark rows to score against (default: loaded with
    :func:`distalign_data.benchmarks.load_rows` from ``source`` for every
    dataset the records use). Returns a summary (inputs, options, files written,
    wall time), also saved as ``report.json``.
    """
    from distalign_data.coin import COIN_DATASET
    from distalign_data.coin import coin_points
    from distalign_data.report_writers import parse_formats
    from distalign_data.report_writers import write_index_html
    from distalign_data.report_writers import write_table

    started = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    formats = parse_formats(formats)
    out = Path(out_dir)
    records, info = load_run_records(run_dirs)
    unknown = [r for r in records if r.dataset not in DATASETS and r.dataset != COIN_DATASET]
    if unknown:
        names = sorted({r.dataset for r in unknown})
        raise ValueError(f"record {unknown[0].row_id!r} and {len(unknown) - 1} more: unknown dataset(s) {names}; "
                         f"expected one of {DATASETS} or {COIN_DATASET!r}")
    bench = [r for r in records if r.dataset in DATASETS]
    coin_records = [r for r in records if r.dataset == COIN_DATASET]
    tables = []
    figures: list[tuple[str, str, Path]] = []
    if bench:
        datasets = [d for d in DATASETS if any(r.dataset == d for r in bench)]
        rows = list(rows) if rows is not None else _load_rows(datasets, source)
        shared, bench_tables, bench_figures = _benchmark_tables(bench, rows, out, protocol=protocol, seed=seed)
        tables += shared + bench_tables
        figures += bench_figures
    if coin_records:
        points = coin_points(coin_records)
        tables.append(_table("coin", points))
        figures += _figure("coin", "Figure 2 shape: biased coin, stated vs expressed P(heads)",
                           _plot("plot_coin", [p for p in points if p["n"] > 0], out / "figures" / "figure2_coin"))
    if not tables:
        raise ValueError("the run directories hold no benchmark or coin records to report on")
    files = []
    for table in tables:
        files += write_table(table, out / "tables", formats)
    summary = {
        "run_dirs": [str(d) for d in run_dirs],
        "runs": info["runs"],
        "duplicates_dropped": info["duplicates_dropped"],
        "protocol": protocol,
        "seed": seed,
        "n_resamples": DEFAULT_RESAMPLES,
        "formats": list(formats),
        "tables": [t.name for t in tables],
        "figures": [anchor for anchor, _, _ in figures],
    }
    lines = [
        f"Run directories: {', '.join(str(d) for d in run_dirs)}; {len(records)} records "
        f"({info['duplicates_dropped']} duplicates dropped).",
        f"Scoring protocol: {protocol}; bootstrap: {DEFAULT_RESAMPLES} resamples, seed {seed}; total variation (TV): lower is better.",
    ]
    files.append(write_index_html(out, title="distalign report", summary=lines, tables=tables, figures=figures))
    files += [p for _, _, png in figures for p in (png, png.with_suffix(".pdf"))]
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    report_path = out / "report.json"
    summary["files"] = sorted(str(p.relative_to(out)) for p in files + [report_path])
    report_path.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def _load_rows(datasets: Sequence[str], source) -> list[dict[str, Any]]:
    from distalign_data.benchmarks import load_rows

    return [row for dataset in datasets for row in load_rows(dataset, source=source)]


def _plot(name: str, data: Any, stem: Path, **options: Any) -> list[Path]:
    from distalign_data import plots

    return getattr(plots, name)(data, stem, **options)


def _figure(anchor: str, caption: str, paths: list[Path]) -> list[tuple[str, str, Path]]:
    return [(anchor, caption, paths[0])]


# Tables of :func:`distalign_data.reproduce.protocol_tables`, by its table ids; the
# per-dataset ids (the paper's Tables 4, 8, 9, 10, or "dataset") go to one table.
_SHARED_TABLES = {"1a": "leaderboard", "1b": "ks_gap", "2": "humans_vs_models", "parse_failures": "parse_failures"}
_SHARED_TEXT = {
    "leaderboard": ("Table 1a shape: leaderboard, mean TV per model × expression method (persona + few-shot)",
                    "Datasets weighted equally (each resampled separately), 95% bootstrap CI; baselines (model "
                    "'baseline': uniform, majority vote, discretization error of 30 draws) on the same rows. dataset "
                    "says which datasets a row covers. Lower is better."),
    "ks_gap": ("Table 1b shape: knowledge-to-simulation gap A(sequence)/A(verbalize) − 1 per model",
               "Persona + few-shot, datasets weighted equally, 95% bootstrap CI. Positive: the model describes the "
               "distribution (verbalize) better than it samples from it (sequence)."),
    "dataset_steering": ("Tables 4, 8, 9, 10 shape: mean TV per dataset × steering × model × method",
                         "One leaderboard per dataset and steering method (and persona + few-shot pooled); the table "
                         "column gives the paper's table number. 95% bootstrap CI, lower is better."),
    "humans_vs_models": ("Table 2 shape: humans and models on OpinionQA + NYT Books",
                         "Persona + few-shot, the two datasets weighted ½ each, 95% bootstrap CI. Lower is better."),
    "parse_failures": ("Parse failures: share of records whose output could not be parsed",
                       "Fraction of records, per model × method × steering over every dataset, 95% bootstrap CI. "
                       "Lower is better."),
}


def _shared_tables(bench, rows, frame, *, protocol: str, seed: int):
    """The tables ``distalign reproduce`` builds (:func:`distalign_data.reproduce.protocol_tables`), one Table each.

    Returns the tables and the per dataset × steering rows (for Figure 4).
    """
    from distalign_data.report_writers import Table
    from distalign_data.reproduce import protocol_tables

    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in protocol_tables(bench, rows, protocol, seed=seed, frame=frame):
        grouped.setdefault(_SHARED_TABLES.get(row["table"], "dataset_steering"), []).append(row)
    tables = [Table(name, _SHARED_TEXT[name][0], grouped[name], _SHARED_TEXT[name][1])
              for name in _SHARED_TEXT if name in grouped]
    return tables, grouped.get("dataset_steering", [])


def _benchmark_tables(bench, rows, out: Path, *, protocol: str, seed: int):
    """The shared tables (from scoring), the report's own tables, and the benchmark figures."""
    from distalign_data import scoring
    from distalign_data.plots import METHOD_LABELS
    from distalign_data.temperature import fit_cell_temperatures

    frame = scoring.score_records(bench, rows, protocol)
    shared, by_dataset_steering = _shared_tables(bench, rows, frame, protocol=protocol, seed=seed)
    cells = fit_cell_temperatures(bench, rows, protocol=protocol, seed=seed)
    temperature_rows, pooled = temperature_table(cells, protocol=protocol)
    own = [
        _table("per_group", per_group_table(frame, protocol=protocol, seed=seed)),
        _table("follow_rate", follow_rate_table(bench)),
        _table("temperature", temperature_rows),
        _table("significance", significance_table(frame, seed=seed)),
    ]
    figures = []
    models = set(frame["model"])
    # Scoring labels datasets with the paper's folder names; single steering methods only.
    fig4 = [{**r, "dataset": PAPER_TO_DATASET[r["dataset"]]} for r in by_dataset_steering
            if r["model"] in models and r["dataset"] in PAPER_TO_DATASET and r["steering"] in STEERING_METHODS]
    if fig4:
        figures += _figure("figure4", "Figure 4 shape: mean TV by dataset × steering for each model",
                           _plot("plot_tv_by_dataset_steering", fig4, out / "figures" / "figure4_tv_by_dataset_steering"))
    nyt_rows = [row for row in rows if row["dataset"] == "nyt_books"]
    marginals = likert_marginals(bench, nyt_rows) if nyt_rows else []
    for method in sorted({m["method"] for m in marginals if m["source"] != "human"}):
        part = [m for m in marginals if m["source"] == "human" or m["method"] == method]
        title = f"NYT Books ({METHOD_LABELS.get(method, method)}): Likert ratings, persona vs few-shot vs human"
        figures += _figure(f"figure5_{method}", f"Figure 5 shape: NYT Likert marginals, {METHOD_LABELS.get(method, method)}",
                           _plot("plot_likert_marginals", part, out / "figures" / f"figure5_nyt_likert_{method}", title=title))
    bins = calibration_bins(pooled)
    if bins:
        figures += _figure("figure6", "Figure 6 shape: calibration of log-probs before and after temperature scaling",
                           _plot("plot_calibration", bins, out / "figures" / "figure6_calibration"))
    return shared, own, figures


def register_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="tables and figures for one or more run directories",
        description="Write every table (md, csv, tex, json), every figure (PNG, PDF) and an index.html for run directories.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (model runs, import-paper, coin)")
    parser.add_argument("--out", default="report", help="output folder (default: ./report)")
    parser.add_argument("--format", default="md,csv,tex,json", help="comma-separated table formats (default: md,csv,tex,json)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="corrected", help="scoring protocol (default: corrected)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every bootstrap and held-out split (default 0)")
    parser.add_argument("--source", default=None, help="upstream data directory (default: DISTALIGN_SOURCE or the pinned download)")
    parser.set_defaults(func=_report_command)


def _report_command(args: Any) -> int:
    from distalign_data.report_writers import parse_formats

    summary = build_report(
        args.run_dirs,
        args.out,
        formats=parse_formats(args.format),
        protocol=args.protocol,
        seed=args.seed,
        source=args.source,
    )
    print(json.dumps({"out": str(args.out), "files": len(summary["files"]), "wall_s": summary["wall_s"]}))
    return 0
