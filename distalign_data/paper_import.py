"""Import the paper's released model outputs as ordinary run records.

Every file ``results/{opinionqa,nytimes,globalvalues}/<method>/<model>/<task>/...``
of the upstream repository becomes one :class:`~distalign_data.records.RunRecord`
per (benchmark row, expression method, steering method, model):

* the record's ``options`` are the row's ``paper_options`` (the paper's letter i
  meant ``paper_options[i]``); for no-steering OpinionQA the prompt showed the
  *Democrat* options (protocol section 2), and the one stored output is scored
  against every group, so it becomes one record per row;
* ``distribution`` is the package's own re-parse of the raw ``response``
  (:mod:`distalign_data.parsing`); the upstream stored neither the full top-k
  log-probabilities nor a prompt, so log-prob records re-parse the stored
  per-letter probabilities, and temperature-scaled records the stored rescaled
  ones;
* ``extra`` keeps what the ``paper`` scoring protocol needs, position by position
  as the upstream scored it: ``paper_distribution`` (the stored
  ``avg_actual_results`` values in stored order) and ``paper_reference`` (the
  stored ``expected_results`` for the row's group), plus where they came from.

Not imported, on purpose: the Asian and Hispanic OpinionQA files and the
CREGION / EDUCATION / INCOME folders (never scored in the paper), and the
``task3_easy_hard_v1`` / ``_v2`` folders (unused Llama experiments on GV). Their
counts go to the manifest under ``skipped``.

``distalign import-paper [--source DIR] --out RUN_DIR`` writes one run directory
with the five models (and the crowd-sourced human baseline, model ``humans``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from typing import Any, Iterable, Iterator

from distalign_data.names import (
    DATASET_TO_PAPER,
    GROUPS,
    METHOD_TO_PAPER,
    PAPER_MODELS,
    PAPER_TO_DATASET,
    STEERING_TO_PAPER,
)
from distalign_data.parsing import Parsed, parse_logprobs, parse_response
from distalign_data.records import RecordStore, RunRecord, row_identity

PAPER_TO_METHOD = {folder: method for method, folder in METHOD_TO_PAPER.items()}
PAPER_TO_STEERING = {folder: steering for steering, folder in STEERING_TO_PAPER.items()}
# No-steering OpinionQA prompts listed the Democrat dict's options (protocol section 2).
NO_STEERING_PROMPT_GROUP = "Democrat"
IMPORT_BACKEND = "paper-import"
# What the paper's runs used (protocol section 3); no seeds were set upstream.
PAPER_SAMPLING = {"temperature": 1.0, "n_samples": 1, "top_logprobs": 20}
# The held-out temperature fit's fold seed (its folds are by question).
TS_SEED = 0


@dataclasses.dataclass(frozen=True)
class ResultFile:
    """One upstream result file (``relpath`` under the upstream root) and what its path says."""

    relpath: str
    dataset: str
    method: str
    model: str
    steering: str
    # OpinionQA / NYT: group attribute (NONE for no steering) and group; GV: "COUNTRY" and the position.
    attribute: str
    group: str


def iter_result_files(source, skipped: Counter | None = None) -> Iterator[ResultFile]:
    """The result files the paper's tables use, in a stable order; others are counted in ``skipped``.

    ``source`` is an :class:`~distalign_data.sources.UpstreamSource` (anything
    with its ``files(prefix)`` method).
    """
    skipped = Counter() if skipped is None else skipped
    for paper_dataset in sorted(PAPER_TO_DATASET):
        dataset = PAPER_TO_DATASET[paper_dataset]
        for relpath in source.files(f"results/{paper_dataset}/"):
            parts = relpath.split("/")
            if not relpath.endswith(".json") or len(parts) < 7:
                skipped[f"{paper_dataset}: other files"] += 1
                continue
            method_folder, model, task = parts[2], parts[3], parts[4]
            if method_folder not in PAPER_TO_METHOD or model not in PAPER_MODELS or task not in PAPER_TO_STEERING:
                skipped[f"{paper_dataset}/{method_folder}/{model}/{task}"] += 1
                continue
            group = parts[-1][: -len(".json")]
            attribute = "COUNTRY" if dataset == "global_opinionqa_contentious" else parts[-2]
            if attribute not in ("COUNTRY", "NONE") and group not in GROUPS[dataset].get(attribute, ()):
                skipped[f"{paper_dataset} group {attribute}/{group}"] += 1
                continue
            yield ResultFile(relpath, dataset, PAPER_TO_METHOD[method_folder], model,
                             PAPER_TO_STEERING[task], attribute, group)


class RowIndex:
    """Benchmark rows of one dataset, found by upstream question key and group."""

    def __init__(self, dataset: str, rows: Iterable[dict[str, Any]]) -> None:
        from distalign_data import schema

        self.dataset = dataset
        self._question_id = {
            "opinionqa_subset": lambda key: key,
            "nyt_books": schema.nyt_question_id,
            "global_opinionqa_contentious": schema.gv_question_id,
        }[dataset]
        self.by_question: dict[str, list[dict[str, Any]]] = {}
        self.by_id: dict[str, dict[str, Any]] = {}
        for row in rows:
            self.by_question.setdefault(row["question_id"], []).append(row)
            self.by_id[row["id"]] = row

    def rows_for(self, upstream_key: str) -> list[dict[str, Any]]:
        return self.by_question.get(self._question_id(upstream_key), [])

    def row(self, upstream_key: str, file: ResultFile) -> dict[str, Any] | None:
        """The row one persona / few-shot file entry was scored against (None if the row does not exist)."""
        for row in self.rows_for(upstream_key):
            if file.attribute == "COUNTRY":
                if row["group_position"] == int(file.group):
                    return row
            elif row["group"] == file.group:
                return row
        return None


def _floats(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values]


def _reparse(file: ResultFile, entry: dict[str, Any], options: list[str]) -> Parsed:
    response = entry["response"][0] if entry.get("response") else ""
    if file.method in ("sequence", "verbalize"):
        return parse_response(file.method, response, options)
    # Log-prob files keep only the per-letter probabilities the upstream summed,
    # not the raw top-k list; re-parse those (the rescaled ones for TS-Log-p).
    stored = entry["avg_actual_results"] if file.method == "temperature_scaled_logprobs" else entry["actual_results"]
    pairs = []
    for letter, value in stored.items():
        probability = value[0] if isinstance(value, list) else value
        if probability is not None and probability > 0 and not math.isnan(probability):
            pairs.append((letter, math.log(probability)))
    return parse_logprobs(pairs, options)


def _record(file: ResultFile, key: str, entry: dict[str, Any], row: dict[str, Any], options: list[str],
            reference: dict[str, float] | None) -> RunRecord:
    parsed = _reparse(file, entry, options)
    stored = entry.get("avg_actual_results") or {}
    extra = {
        "paper_file": file.relpath,
        "upstream_key": key,
        "paper_letters": list(stored),
        # The upstream read stored dicts positionally (list(dict.values())); keep that order.
        "paper_distribution": _floats(stored.values()),
        "paper_reference": None if reference is None else _floats(reference.values()),
    }
    response = entry["response"][0] if entry.get("response") else ""
    return RunRecord(
        model=file.model,
        **row_identity(row),
        method=file.method,
        steering=file.steering,
        options=list(options),
        distribution=parsed.distribution,
        parse_status=parsed.status,
        parse_reason=parsed.reason,
        parse_details=parsed.details,
        raw_response=response if isinstance(response, str) else json.dumps(response),
        backend=IMPORT_BACKEND,
        sampling=dict(PAPER_SAMPLING),
        extra=extra,
    )


def records_from_file(file: ResultFile, entries: dict[str, Any], index: RowIndex,
                      skipped: Counter | None = None) -> list[RunRecord]:
    """The run records of one upstream result file (``entries``: its parsed JSON)."""
    skipped = Counter() if skipped is None else skipped
    records = []
    for key, entry in entries.items():
        if file.steering == "none":
            rows = index.rows_for(key)
            prompt_rows = [r for r in rows if r["group"] == NO_STEERING_PROMPT_GROUP]
            for row in rows:
                options = (prompt_rows[0] if prompt_rows else row)["paper_options"]
                reference = entry.get(f"expected_results_{row['group_attribute']}_{row['group']}")
                records.append(_record(file, key, entry, row, options, reference))
            if not rows:
                skipped[f"{file.dataset}: no rows for {key!r}"] += 1
            continue
        row = index.row(key, file)
        if row is None:
            # FEM2_W29 was asked of women only: the Male entry has no reference and no row.
            skipped[f"{file.dataset}: no row for {key!r} / {file.group}"] += 1
            continue
        records.append(_record(file, key, entry, row, row["paper_options"], entry.get("expected_results")))
    return records


def refit_temperature(records: list[RunRecord], indexes: dict[str, RowIndex], *, n_folds: int | None = None,
                      seed: int = TS_SEED) -> list[RunRecord]:
    """Give each temperature-scaled record the package's own fit instead of the upstream's rescaled vector.

    Per (model, dataset, steering), as the paper did, one oracle τ is fitted on
    the re-parsed log-prob records against their rows' references
    (:func:`~distalign_data.temperature.fit_cell_temperatures`, the fits the
    report's temperature table shows; NaN-safe: failed parses are excluded,
    never turned into τ = 3.8197). The record's ``distribution`` is the
    log-prob re-parse scaled with it; ``extra`` records τ, its bounds, and the
    held-out variant (``n_folds`` folds by question, default
    :data:`~distalign_data.temperature.HELDOUT_FOLDS`, seeded):
    ``heldout_tau`` and ``heldout_distribution``. The upstream's stored
    rescaled vector stays in ``extra["paper_distribution"]`` for the ``paper``
    protocol.
    """
    from distalign_data.distributions import align
    from distalign_data.temperature import HELDOUT_FOLDS, apply_temperature, fit_cell_temperatures

    n_folds = HELDOUT_FOLDS if n_folds is None else n_folds
    scaled_records = {(r.model, r.dataset, r.steering, r.row_id): position
                      for position, r in enumerate(records) if r.method == "temperature_scaled_logprobs"}
    # Only cells with a temperature-scaled record to fill need a fit.
    wanted = {key[:3] for key in scaled_records}
    logprob_records = [r for r in records if r.method == "logprobs" and (r.model, r.dataset, r.steering) in wanted]
    rows = {dataset: list(index.by_id.values()) for dataset, index in indexes.items()}
    fits = fit_cell_temperatures(logprob_records, rows, protocol="corrected", n_folds=n_folds, seed=seed)
    out = list(records)
    for cell, fit in fits.items():
        oracle, heldout, usable = fit.oracle, fit.heldout, set(fit.usable)
        for i, source in enumerate(fit.records):
            target = scaled_records.get(cell + (source.row_id,))
            if target is None:
                continue
            record = out[target]
            extra = {**record.extra, "tau": None if oracle is None else oracle.tau,
                     "tau_bounds": None if oracle is None else list(oracle.bounds),
                     "tau_at_bound": None if oracle is None else oracle.at_bound, "tau_seed": seed,
                     "tau_folds": n_folds, "heldout_tau": None, "heldout_distribution": None}
            if i not in usable:
                out[target] = dataclasses.replace(
                    record, distribution=None, parse_status="failed",
                    parse_reason="log-prob parse failed: nothing to scale", extra=extra)
                continue
            row_options = indexes[cell[1]].by_id[source.row_id]["options"]
            scaled = apply_temperature([fit.predictions[i]], oracle.tau)[0]
            if heldout is not None:
                extra["heldout_tau"] = float(heldout.tau_of_row[i])
                extra["heldout_distribution"] = align(row_options, heldout.scaled[i], record.options,
                                                      drop_extra=True).tolist()
            out[target] = dataclasses.replace(
                record,
                distribution=align(row_options, scaled, record.options, drop_extra=True).tolist(),
                parse_status=source.parse_status, parse_reason=source.parse_reason,
                parse_details=dict(source.parse_details), extra=extra)
    return out


def import_paper_outputs(
    out: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    rows: dict[str, list[dict[str, Any]]] | None = None,
    humans: bool = True,
) -> RecordStore:
    """Import every result file (and, with ``humans``, the human baseline) into the run directory ``out``.

    ``rows`` maps canonical dataset names to benchmark rows; by default they are
    loaded with :func:`distalign_data.benchmarks.load_rows` from the same source.
    Importing into a directory that already holds the records is a no-op
    (records are keyed deterministically).
    """
    from distalign_data.sources import load_manifest, resolve_source

    upstream = resolve_source(source)
    if rows is None:
        from distalign_data.benchmarks import load_rows

        rows = {dataset: load_rows(dataset, source=upstream) for dataset in DATASET_TO_PAPER}
    indexes = {dataset: RowIndex(dataset, dataset_rows) for dataset, dataset_rows in rows.items()}
    skipped: Counter = Counter()
    store = RecordStore(out)
    records: list[RunRecord] = []
    files = 0
    models: Counter = Counter()
    for file in iter_result_files(upstream, skipped):
        if file.dataset not in indexes:
            skipped[f"{file.dataset}: no rows given"] += 1
            continue
        file_records = records_from_file(file, upstream.read_json(file.relpath), indexes[file.dataset], skipped)
        records.extend(file_records)
        files += 1
        models[file.model] += len(file_records)
    records = refit_temperature(records, indexes)
    # One append: one fsync for the whole import.
    store.append(records)
    manifest = {
        "kind": "paper-import",
        "models": sorted(models),
        "backend": IMPORT_BACKEND,
        "sampling": dict(PAPER_SAMPLING),
        # The upstream set no seeds; the package's only random choice here is the held-out τ folds.
        "seeds": {"upstream": None, "heldout_temperature_folds": TS_SEED},
        "package_version": _package_version(),
        "dataset_revision": load_manifest(upstream.manifest)["commit"],
        "source": upstream.describe(),
        "paper_files": files,
        "records_per_model": dict(sorted(models.items())),
        "skipped": dict(sorted(skipped.items())),
    }
    if humans:
        from distalign_data.human_baseline import import_human_baseline

        human_count = import_human_baseline(store, source=upstream, rows=rows)
        if human_count:
            manifest["models"] = sorted(models) + ["humans"]
            manifest["records_per_model"]["humans"] = human_count
    store.update_manifest(manifest)
    return store


def _package_version() -> str:
    from distalign_data import __version__

    return __version__


def _run_import(args) -> int:
    store = import_paper_outputs(args.out, source=args.source, humans=not args.no_humans)
    manifest = store.manifest()
    total = sum(manifest["records_per_model"].values())
    print(f"imported {total} records for {', '.join(manifest['models'])} into {store.run_dir}")
    for what, count in manifest["skipped"].items():
        print(f"  skipped {count}: {what}")
    return 0


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-paper",
        help="import the paper's released model outputs as run records",
        description="Import the paper's released outputs (results/ of the upstream repository) into a run directory.",
    )
    parser.add_argument("--source", default=None, help="upstream directory (default: the configured source)")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--no-humans", action="store_true", help="skip the crowd-sourced human baseline")
    parser.set_defaults(func=_run_import)
