"""The biased-coin experiment (the paper's Figure 2): can a model express a stated probability?

A model is told that a coin lands heads with probability p, for p in 0, 0.1, …,
1, and asked to express that coin by each expression method: one flip (its
log-probabilities), 30 flips (a sequence) or the chances in words (verbalised).
The coin's two sides are presented as options A (heads) and B (tails), so the
benchmark's own parsers read the answers and every outcome is an ordinary
:class:`~distalign_data.records.RunRecord` (dataset ``biased_coin``) in a run
directory. ``distalign coin`` writes the records, a table of stated against
expressed P(heads) and the figure; ``distalign report`` picks the records up.

>>> p = coin_prompt(0.3, "sequence")
>>> p.options, p.letters
(('Heads', 'Tails'), ('A', 'B'))
>>> "30%" in p.messages[1]["content"] and "70%" in p.messages[1]["content"]
True
>>> coin_row_id(0.3, 2)
'coin-p0.30/s2'
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from distalign_data import __version__
from distalign_data.names import EXPRESSION_METHODS
from distalign_data.prompts import SEQUENCE_LENGTH
from distalign_data.prompts import SYSTEM_MESSAGE
from distalign_data.prompts import Prompt
from distalign_data.records import RecordStore

COIN_DATASET = "biased_coin"
COIN_TEMPLATE_VERSION = "distalign-coin-1"
COIN_OPTIONS = ("Heads", "Tails")
# Stated probabilities of heads: 0, 0.1, ..., 1 (the paper's grid).
STATED_PROBABILITIES = tuple(round(i / 10, 1) for i in range(11))
COIN_FILE_STEM = "coin_stated_vs_expressed"

_COIN_TASK = {
    "logprobs": "Flip the coin once. Reply with the single letter of the side it landed on, and nothing else.",
    "sequence": (
        f"Flip the coin {SEQUENCE_LENGTH} times. Write down the {SEQUENCE_LENGTH} results in order as letters "
        "separated by spaces, so that they look like real flips of this coin. Write only the letters."
    ),
    "verbalize": (
        "Give the chance of each side for one flip of this coin. Reply with only a JSON object that maps each "
        'letter to a whole-number percentage, for example {"A": 25, "B": 75}.'
    ),
}
_ANSWER_CUE = {"logprobs": "Answer:", "sequence": "Flips:", "verbalize": "Percentages:"}


def _percent(p: float) -> str:
    return f"{round(100 * p)}%"


def coin_prompt(p_heads: float, method: str) -> Prompt:
    """The prompt asking a model to express a coin that lands heads with probability ``p_heads``."""
    if method not in EXPRESSION_METHODS:
        raise ValueError(f"coin: unknown expression method {method!r}; expected one of {EXPRESSION_METHODS}")
    if not 0.0 <= p_heads <= 1.0:
        raise ValueError(f"coin: stated probability {p_heads!r} is not between 0 and 1")
    user = (
        f"A biased coin lands heads with probability {_percent(p_heads)} and tails with probability "
        f"{_percent(1 - p_heads)}.\n\nSides:\nA. {COIN_OPTIONS[0]}\nB. {COIN_OPTIONS[1]}\n\n{_COIN_TASK[method]}"
    )
    messages = ({"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user})
    text = f"{SYSTEM_MESSAGE}\n\n{user}\n\n{_ANSWER_CUE[method]}"
    digest = hashlib.sha256(
        json.dumps([COIN_TEMPLATE_VERSION, list(messages), text], ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()
    return Prompt(messages, COIN_OPTIONS, ("A", "B"), COIN_TEMPLATE_VERSION, text, digest)


def coin_row_id(p_heads: float, sample: int) -> str:
    """Row id of one sample of one stated probability (one record per sample)."""
    return f"coin-p{p_heads:.2f}/s{sample}"


def coin_points(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Stated against expressed P(heads) per model × method × stated p, from coin records.

    ``expressed_p`` is the mean P(heads) over the samples that parsed,
    ``expressed_sd`` their standard deviation (0 for one sample), ``n`` the
    samples that parsed, ``n_failed`` those that did not. Records of other
    datasets are ignored.

    >>> from distalign_data.records import RunRecord
    >>> recs = [RunRecord(model="m", dataset=COIN_DATASET, row_id=coin_row_id(0.3, s), question_id="coin-p0.30",
    ...                   group_attribute="COIN", group="coin", method="sequence", steering="none",
    ...                   options=list(COIN_OPTIONS), distribution=d, parse_status="ok", extra={"stated_p": 0.3})
    ...         for s, d in enumerate([[0.2, 0.8], [0.4, 0.6]])]
    >>> [(r["stated_p"], round(r["expressed_p"], 3), r["n"]) for r in coin_points(recs)]
    [(0.3, 0.3, 2)]
    """
    cells: dict[tuple[str, str, float], list[Any]] = {}
    for record in records:
        if record.dataset != COIN_DATASET:
            continue
        key = (record.model, record.method, float(record.extra["stated_p"]))
        cells.setdefault(key, []).append(record)
    points = []
    for (model, method, stated), cell in sorted(cells.items()):
        heads = [_heads_probability(r) for r in cell if r.distribution is not None]
        points.append(
            {
                "model": model,
                "method": method,
                "stated_p": stated,
                "expressed_p": statistics.fmean(heads) if heads else float("nan"),
                "expressed_sd": statistics.pstdev(heads) if heads else float("nan"),
                "abs_error": abs(statistics.fmean(heads) - stated) if heads else float("nan"),
                "n": len(heads),
                "n_failed": len(cell) - len(heads),
            }
        )
    return points


def _heads_probability(record: Any) -> float:
    index = list(record.options).index(COIN_OPTIONS[0])
    total = sum(record.distribution)
    return record.distribution[index] / total if total > 0 else float("nan")


def coin_methods(methods: Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(methods or EXPRESSION_METHODS)
    unknown = [m for m in chosen if m not in EXPRESSION_METHODS]
    if unknown:
        raise ValueError(f"coin: unknown expression method(s) {unknown}; expected some of {EXPRESSION_METHODS}")
    return chosen


def coin_sample_seed(run_seed: int, sample: int) -> int:
    """Seed of one sample: the repeated flips of one stated p must differ, so each sample has its own seed.

    >>> coin_sample_seed(0, 0) != coin_sample_seed(0, 1)
    True
    """
    return int(hashlib.sha256(f"coin:{int(run_seed)}:{int(sample)}".encode("ascii")).hexdigest()[:8], 16)


def plan_coin_jobs(model: str, *, methods: Sequence[str], probabilities: Sequence[float], samples: int, seed: int) -> list:
    """(job, prompt) pairs: one per method × stated p × sample; log-probs need one sample (they are not sampled)."""
    from distalign_data.model_runners.base import Job

    if samples < 1:
        raise ValueError(f"coin: samples must be at least 1, got {samples}")
    work = []
    for method in coin_methods(methods):
        for p in probabilities:
            prompt = coin_prompt(p, method)
            for sample in range(1 if method == "logprobs" else samples):
                row = {
                    "id": coin_row_id(p, sample),
                    "dataset": COIN_DATASET,
                    "question_id": coin_row_id(p, sample).split("/")[0],
                    "group_attribute": "",
                    "group": "",
                    "options": list(COIN_OPTIONS),
                    "stated_p": p,
                    "sample": sample,
                }
                work.append((Job(row, method, "none", model, coin_sample_seed(seed, sample)), prompt))
    return work


def run_coin(
    backend: Any,
    run_dir: str | Path,
    *,
    seed: int,
    methods: Sequence[str] | None = None,
    samples: int = 5,
    probabilities: Sequence[float] = STATED_PROBABILITIES,
    progress: bool = True,
) -> dict[str, Any]:
    """Ask ``backend`` for every coin, write one record per answer, then the table and figure.

    Uses the runner's own pieces (jobs, capability check, ``backend.generate``,
    :func:`~distalign_data.model_runners.base.make_record` with the benchmark's
    parsers). Records already in ``run_dir`` are not asked again. Returns a
    summary with the paths written.
    """
    from tqdm.auto import tqdm

    from distalign_data.model_runners.base import check_capabilities
    from distalign_data.model_runners.base import make_record

    chosen = coin_methods(methods)
    store = RecordStore(run_dir)
    done = store.keys()
    work = [(job, prompt) for job, prompt in plan_coin_jobs(
        backend.spec, methods=chosen, probabilities=probabilities, samples=samples, seed=seed
    ) if job.key not in done]
    check_capabilities(backend, [job for job, _ in work])
    bar = tqdm(total=len(work), desc=f"coin {backend.spec}", unit="record", disable=not progress)
    written = 0

    def on_output(job: Any, prompt: Prompt, raw: Any) -> None:
        nonlocal written
        record = make_record(backend, job, prompt, raw)
        record.extra = {"stated_p": job.row["stated_p"], "sample": job.row["sample"]}
        written += store.append([record])
        bar.update(1)

    started = time.perf_counter()
    if work:
        backend.generate(work, on_output)
    bar.close()
    store.update_manifest(
        {
            "experiment": COIN_DATASET,
            "model": backend.spec,
            "backend": backend.name,
            "seed": seed,
            "samples": samples,
            "methods": list(chosen),
            "stated_probabilities": list(probabilities),
            "sampling": {m: backend.sampling_parameters(m) for m in chosen},
            "template_version": COIN_TEMPLATE_VERSION,
            "package_version": __version__,
            "last_run_s": round(time.perf_counter() - started, 3),
        }
    )
    paths = write_coin_outputs(store.records(), run_dir)
    return {"asked": len(work), "written": written, "files": [str(p) for p in paths]}


def write_coin_outputs(records: Iterable[Any], out_dir: str | Path) -> list[Path]:
    """The stated-vs-expressed table (CSV, JSON) and the Figure 2 plot (PNG, PDF) of coin records."""
    from distalign_data.plots import plot_coin
    from distalign_data.report_writers import Table
    from distalign_data.report_writers import write_table

    points = coin_points(records)
    if not points:
        raise ValueError(f"coin: no {COIN_DATASET} records to summarise")
    table = Table(COIN_FILE_STEM, "Biased coin: stated versus expressed P(heads)", points)
    paths = write_table(table, out_dir, ("csv", "json"))
    plotted = [p for p in points if p["n"] > 0]
    if plotted:
        paths += plot_coin(plotted, Path(out_dir) / COIN_FILE_STEM)
    return paths


# The paper's coin outputs (results/biased_coin/<model>/): one log-prob file, and the
# first of these sequence files whose entries keep the raw responses.
PAPER_COIN_LOGPROBS = "biased_coin_benchmark.json"
PAPER_COIN_SEQUENCE = ("biased_coin_seq_benchmark.json", "biased_coin_seq_benchmark_v2.json")
PAPER_COIN_BACKEND = "paper-import"
# The paper's coin prompts asked for 'H' and 'T'; the package's parsers read option letters.
_HEADS_TAILS_AS_LETTERS = str.maketrans({"H": "A", "T": "B", "h": "a", "t": "b"})


def import_paper_coin(out: str | Path, *, source: Any = None) -> dict[str, Any]:
    """Import the paper's biased-coin outputs (log-probs and sequences; it released no verbalised ones) as coin records.

    Log-prob records re-parse the stored mean P(H) and P(T) of each prompt (the
    raw top-k lists were not released); sequence records re-parse each stored
    response with the package's sequence parser after reading H as option A and
    T as option B. Each of the paper's prompts (it phrased every p twice, heads
    or tails first) and each response is one sample. Writes the records, the
    table and the figure like :func:`run_coin`; returns a summary.
    """
    import math

    from distalign_data.parsing import parse_logprobs
    from distalign_data.parsing import parse_sequence
    from distalign_data.records import RunRecord
    from distalign_data.sources import resolve_source

    upstream = resolve_source(source)
    files = set(upstream.files("results/biased_coin/"))
    models = sorted({path.split("/")[2] for path in files if path.count("/") == 3})
    records = []
    for model in models:
        samples: dict[tuple[str, float], int] = {}

        def add(method: str, stated: float, parsed: Any, raw: str, relpath: str) -> None:
            sample = samples.get((method, stated), 0)
            samples[(method, stated)] = sample + 1
            records.append(RunRecord(
                model=model, dataset=COIN_DATASET, row_id=coin_row_id(stated, sample),
                question_id=coin_row_id(stated, sample).split("/")[0], group_attribute="", group="",
                method=method, steering="none", options=list(COIN_OPTIONS), distribution=parsed.distribution,
                parse_status=parsed.status, parse_reason=parsed.reason, parse_details=parsed.details,
                raw_response=raw, backend=PAPER_COIN_BACKEND,
                extra={"stated_p": stated, "sample": sample, "paper_file": relpath},
            ))

        relpath = f"results/biased_coin/{model}/{PAPER_COIN_LOGPROBS}"
        if relpath in files:
            for entry in upstream.read_json(relpath).values():
                means = entry.get("avg_expected_results") or {}
                pairs = [(letter, math.log(means[side])) for side, letter in (("h", "A"), ("t", "B"))
                         if isinstance(means.get(side), (int, float)) and means[side] > 0]
                add("logprobs", round(float(entry["expected_results"]["h"]), 2), parse_logprobs(pairs, COIN_OPTIONS),
                    json.dumps(pairs), relpath)
        for name in PAPER_COIN_SEQUENCE:
            relpath = f"results/biased_coin/{model}/{name}"
            entries = upstream.read_json(relpath) if relpath in files else {}
            if not entries or not all("response" in e for e in entries.values()):
                continue
            for entry in entries.values():
                stated = round(float(entry["expected_results"]["h"]), 2)
                for response in entry["response"]:
                    text = response if isinstance(response, str) else ""
                    add("sequence", stated, parse_sequence(text.translate(_HEADS_TAILS_AS_LETTERS), COIN_OPTIONS),
                        text, relpath)
            break
    if not records:
        raise ValueError("the upstream source holds no results/biased_coin/ outputs to import")
    store = RecordStore(out)
    written = store.append(records)
    store.update_manifest({
        "experiment": COIN_DATASET,
        "kind": "paper-import",
        "backend": PAPER_COIN_BACKEND,
        "models": models,
        "methods": sorted({r.method for r in records}),
        "seed": None,
        "package_version": __version__,
    })
    paths = write_coin_outputs(store.records(), out)
    return {"imported": len(records), "written": written, "files": [str(p) for p in paths]}


def register_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "coin",
        help="the biased-coin experiment: stated vs expressed probability",
        description=(
            "Ask a model to flip a coin of bias p = 0, 0.1, ..., 1 by each expression method; write the records, "
            "a table of stated against expressed P(heads) and the figure into a run directory."
        ),
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="hf:<path-or-hub-id>, openai:<model>, openai-compatible:<base_url>#<model>, anthropic:<model>")
    which.add_argument("--import-paper", action="store_true", help="import the paper's released coin outputs instead of running a model")
    parser.add_argument("--source", default=None, help="upstream data directory for --import-paper (default: DISTALIGN_SOURCE or the pinned download)")
    parser.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (each sample's sampling seed derives from it)")
    parser.add_argument("--samples", type=int, default=5, help="answers per stated p for sequence and verbalize (default 5)")
    parser.add_argument("--methods", default=",".join(EXPRESSION_METHODS), help="comma-separated expression methods")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation length for local models")
    parser.add_argument("--api-key-env", default=None, help="name of the environment variable holding the API key")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_coin_command)


def _coin_command(args: Any) -> int:
    from distalign_data.model_runners.base import get_backend

    if args.import_paper:
        print(json.dumps(import_paper_coin(args.out, source=args.source), sort_keys=True))
        return 0
    options = {k: getattr(args, k) for k in ("max_new_tokens", "api_key_env") if getattr(args, k) is not None}
    backend = get_backend(args.model, **options)
    try:
        summary = run_coin(
            backend,
            args.out,
            seed=args.seed,
            methods=[m.strip() for m in args.methods.split(",") if m.strip()],
            samples=args.samples,
            progress=not args.no_progress,
        )
    finally:
        backend.close()
    print(json.dumps(summary, sort_keys=True))
    return 0
