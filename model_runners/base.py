"""The runner interface and the driver shared by every backend, plus ``distalign run``.

A backend turns (job, prompt) pairs into raw outputs; everything around that is
here: planning the jobs (row x expression method x steering method), skipping
the records a run directory already holds, checking the backend's capabilities
before any work, rendering prompts, serving repeated and cached prompts from the
response cache, parsing, and writing one :class:`RunRecord` per job as soon as
its output arrives, then the manifest.

Caching: :func:`run` keys each response by everything that determines it
(backend, model, the backend's ``response_identity`` such as the model's
fingerprint or the server's URL, sampling parameters, prompt hash, sample seed) and keeps the
cache in the run directory (or ``cache_dir``). A prompt that several jobs share
(a no-steering prompt is the same for every group of a question) is sent to the
backend once. Backends therefore need no cache of their own. The sample seed of
a job (:func:`sample_seed`) is derived from the run seed and the prompt, so it
does not depend on batch composition, process count or resumption.

>>> plan_jobs([{"id": "q/Male", "dataset": "nyt_books"}], ["sequence"], ["none", "persona"], "hf:x", 0)[1].steering
'persona'
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from distalign_data import __version__
from distalign_data.names import EXPRESSION_METHODS
from distalign_data.names import STEERING_METHODS
from distalign_data.records import RecordStore
from distalign_data.records import RunRecord
from distalign_data.records import record_key
from distalign_data.records import row_identity

# A running invocation rewrites the manifest (usage so far) at most this often, so a
# killed run loses at most this much of its usage record.
MANIFEST_FLUSH_S = 10.0

# Model spec prefix -> the backend module (imported lazily: each pulls heavy libraries).
BACKEND_MODULES = {
    "hf": "distalign_data.model_runners.hf",
    "openai": "distalign_data.model_runners.openai_api",
    "openai-compatible": "distalign_data.model_runners.openai_api",
    "anthropic": "distalign_data.model_runners.anthropic_api",
}


@dataclasses.dataclass(frozen=True)
class Job:
    """One record's worth of work."""

    row: dict
    method: str
    steering: str
    model: str
    seed: int

    @property
    def key(self) -> str:
        return record_key(self.model, self.row["dataset"], self.row["id"], self.method, self.steering)


@dataclasses.dataclass
class RawOutput:
    """What a backend returns for one prompt; ``error`` set means the request failed for good."""

    text: str | None = None
    top_logprobs: list[tuple[str, float]] | None = None
    usage: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    elapsed_s: float | None = None
    cached: bool = False


@dataclasses.dataclass(frozen=True)
class Capabilities:
    logprobs: bool
    max_top_logprobs: int | None  # None = unlimited (local model)


class Backend(Protocol):
    """What :func:`run` needs from a backend.

    A backend may also have ``is_main_process`` (False in the helper processes of
    a data-parallel run: they must not write), ``response_identity`` (a dict of
    what, besides the spec and the sampling parameters, determines a response:
    the model's fingerprint, the effective server URL; part of every response
    cache key and of the manifest; never a secret), ``describe()`` (a dict of
    facts for the manifest, such as library versions; never a secret) and
    ``plan(work)``, called before ``generate`` with one (job, prompt) per
    distinct prompt of the whole run, finished ones included (the local backend
    fixes its batches over them so that resumed runs batch alike).
    """

    spec: str
    name: str
    capabilities: Capabilities

    def sampling_parameters(self, method: str) -> dict: ...

    def generate(self, work: list, on_output: Callable) -> None: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class RunSummary:
    """What one :func:`run` call did (counts of jobs)."""

    planned: int
    skipped: int  # already in the record store
    unique_prompts: int
    from_cache: int
    generated: int
    written: int
    failed: int
    usage: dict


def get_backend(spec: str, **options: Any) -> Backend:
    """The backend for a model spec (``hf:``, ``openai:``, ``openai-compatible:``, ``anthropic:``).

    Each backend module exposes ``create_backend(spec, **options)``.

    >>> get_backend("gpt-4")
    Traceback (most recent call last):
    ...
    ValueError: model spec 'gpt-4' has no known prefix; expected one of anthropic:, hf:, openai:, openai-compatible:
    """
    prefix, sep, _ = spec.partition(":")
    if not sep or prefix not in BACKEND_MODULES:
        known = ", ".join(f"{p}:" for p in sorted(BACKEND_MODULES))
        raise ValueError(f"model spec {spec!r} has no known prefix; expected one of {known}")
    return importlib.import_module(BACKEND_MODULES[prefix]).create_backend(spec, **options)


def plan_jobs(rows: Iterable[Mapping[str, Any]], methods: Sequence[str], steerings: Sequence[str], model: str, seed: int) -> list[Job]:
    """One job per (row, expression method, steering method), rows outermost."""
    for method in methods:
        if method not in EXPRESSION_METHODS:
            raise ValueError(f"unknown expression method {method!r}; expected one of {EXPRESSION_METHODS}")
    for steering in steerings:
        if steering not in STEERING_METHODS:
            raise ValueError(f"unknown steering method {steering!r}; expected one of {STEERING_METHODS}")
    return [Job(dict(row), m, s, model, seed) for row in rows for m in methods for s in steerings]


def check_capabilities(backend: Backend, jobs: Iterable[Job]) -> None:
    """Raise ValueError naming the first job the backend cannot do, before any work starts."""
    caps = backend.capabilities
    for job in jobs:
        if job.method != "logprobs":
            continue
        if not caps.logprobs:
            raise ValueError(
                f"row {job.row['id']!r}: expression method 'logprobs' needs log-probabilities, "
                f"which backend {backend.name!r} ({backend.spec}) does not give"
            )
        if caps.max_top_logprobs is not None and len(job.row["options"]) > caps.max_top_logprobs:
            raise ValueError(
                f"row {job.row['id']!r}: {len(job.row['options'])} options but backend {backend.name!r} "
                f"returns at most {caps.max_top_logprobs} top log-probabilities"
            )


def sample_seed(run_seed: int, prompt: Any) -> int:
    """The seed of one prompt's sampling: a function of the run seed and the prompt only.

    >>> sample_seed(0, type("P", (), {"sha256": "ab"})())
    3636462998
    """
    digest = hashlib.sha256(f"{int(run_seed)}:{prompt.sha256}".encode("ascii")).hexdigest()
    return int(digest[:8], 16)


def response_key(backend: Backend, job: Job, prompt: Any) -> str:
    """Cache key of the response to one prompt (no row or group in it: shared prompts share it).

    Besides the spec, the request and the prompt, the key holds the backend's
    ``response_identity`` (the model's fingerprint, the server's base URL), so a
    cache shared by runs never serves an answer of another model version or server.
    """
    from distalign_data.model_runners.cache import cache_key

    return cache_key(
        backend=backend.name,
        model=backend.spec,
        identity=getattr(backend, "response_identity", {}),
        method=job.method,
        request=backend.sampling_parameters(job.method),
        prompt=prompt.sha256,
        seed=sample_seed(job.seed, prompt),
    )


def _raw_response_text(job: Job, raw: RawOutput) -> str:
    if raw.error is not None:
        return ""
    if job.method == "logprobs":
        return json.dumps([[t, lp] for t, lp in raw.top_logprobs or []], ensure_ascii=False)
    return raw.text or ""


def make_record(backend: Backend, job: Job, prompt: Any, raw: RawOutput) -> RunRecord:
    """Parse one raw output into the job's run record."""
    from distalign_data.parsing import parse_response

    if raw.error is not None:
        distribution, status, reason, details = None, "failed", raw.error, {}
    else:
        payload = raw.top_logprobs if job.method == "logprobs" else raw.text
        parsed = parse_response(job.method, payload, list(prompt.options))
        distribution, status, reason, details = parsed.distribution, parsed.status, parsed.reason, parsed.details
    return RunRecord(
        model=job.model,
        **row_identity(job.row),
        method=job.method,
        steering=job.steering,
        options=list(prompt.options),
        distribution=distribution,
        parse_status=status,
        parse_reason=reason,
        parse_details=details,
        raw_response=_raw_response_text(job, raw),
        prompt=json.dumps(list(prompt.messages), ensure_ascii=False),
        prompt_sha256=prompt.sha256,
        template_version=prompt.template_version,
        backend=backend.name,
        sampling={**backend.sampling_parameters(job.method), "seed": sample_seed(job.seed, prompt)},
        seed=job.seed,
        usage=dict(raw.usage),
        elapsed_s=raw.elapsed_s,
    )


def _limit_per_dataset(rows: Iterable[Mapping[str, Any]], limit: int | None) -> list[Mapping[str, Any]]:
    if limit is None:
        return list(rows)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        if seen.get(row["dataset"], 0) < limit:
            seen[row["dataset"]] = seen.get(row["dataset"], 0) + 1
            out.append(row)
    return out


def _dataset_fingerprints(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset: how many rows were planned and a SHA-256 of their content (the data revision used)."""
    out: dict[str, Any] = {}
    for row in rows:
        entry = out.setdefault(row["dataset"], {"rows": 0, "hash": hashlib.sha256()})
        entry["rows"] += 1
        entry["hash"].update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
    return {name: {"rows": e["rows"], "rows_sha256": e["hash"].hexdigest()} for name, e in out.items()}


def _add_usage(total: dict, usage: Mapping[str, Any]) -> None:
    for key, value in usage.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def run(
    backend: Backend,
    rows: Iterable[Mapping[str, Any]],
    *,
    methods: Sequence[str],
    steerings: Sequence[str],
    run_dir: str | Path,
    seed: int,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> RunSummary:
    """Run every (row, method, steering) job not yet in ``run_dir`` and write its record.

    ``limit`` keeps the first N rows of each dataset. Records are appended as
    outputs arrive, so a killed run resumes where it stopped; responses already
    in the cache are not requested again; a run directory whose manifest names
    another version of this model (``response_identity``) is refused. The manifest is written at the end
    (also when the backend raises) and every :data:`MANIFEST_FLUSH_S` seconds
    while outputs arrive.
    """
    from tqdm.auto import tqdm

    from distalign_data.model_runners.cache import CACHE_FILE
    from distalign_data.model_runners.cache import ResponseCache
    from distalign_data.prompts import render_prompt

    rows = _limit_per_dataset(rows, limit)
    is_main = getattr(backend, "is_main_process", True)
    store = RecordStore(run_dir)
    _check_same_model_version(store, backend)
    jobs = plan_jobs(rows, methods, steerings, backend.spec, seed)
    done = store.keys()
    pending = [job for job in jobs if job.key not in done]
    check_capabilities(backend, pending)
    cache = ResponseCache(Path(cache_dir or run_dir) / CACHE_FILE)

    # Jobs that share a prompt share one response: one representative goes to the backend.
    every: dict[str, tuple[Job, Any]] = {}
    sharing: dict[str, list[tuple[Job, Any]]] = {}
    for job in jobs:
        prompt = render_prompt(job.row, job.method, job.steering, seed=job.seed)
        key = response_key(backend, job, prompt)
        every.setdefault(key, (job, prompt))
        if job.key not in done:
            sharing.setdefault(key, []).append((job, prompt))
    if hasattr(backend, "plan"):
        backend.plan(list(every.values()))

    summary = RunSummary(len(jobs), len(jobs) - len(pending), len(sharing), 0, 0, 0, 0, {})
    # Usage of earlier invocations on this run directory; this one's is added to it.
    usage_before = dict(store.manifest().get("usage", {}))
    datasets = _dataset_fingerprints(rows)
    started = time.perf_counter()
    last_flush = started

    def write_manifest() -> None:
        if is_main:
            _write_manifest(store, backend, datasets, summary, usage_before, methods=methods, steerings=steerings,
                            seed=seed, limit=limit, run_s=time.perf_counter() - started)

    bar = tqdm(total=len(pending), desc=f"run {backend.spec}", unit="record", disable=not (progress and is_main))

    def write(key: str, raw: RawOutput) -> None:
        records = [make_record(backend, job, prompt, raw) for job, prompt in sharing[key]]
        summary.written += store.append(records)
        summary.failed += sum(r.parse_status == "failed" for r in records)
        bar.update(len(records))

    def on_output(job: Job, prompt: Any, raw: RawOutput) -> None:
        nonlocal last_flush
        key = response_key(backend, job, prompt)
        summary.generated += 1
        _add_usage(summary.usage, raw.usage)
        if raw.error is None:
            cache.put(key, {"text": raw.text, "top_logprobs": raw.top_logprobs, "usage": raw.usage})
        write(key, raw)
        if time.perf_counter() - last_flush > MANIFEST_FLUSH_S:
            last_flush = time.perf_counter()
            write_manifest()

    work = []
    for key, members in sharing.items():
        hit = cache.get(key)
        if hit is None:
            work.append(members[0])
        elif is_main:
            summary.from_cache += 1
            top = hit["top_logprobs"]
            write(key, RawOutput(hit["text"], None if top is None else [tuple(p) for p in top], hit["usage"], cached=True))

    try:
        if work:
            backend.generate(work, on_output)
    finally:
        # Also when a run limit or a refused configuration stops the run: what was
        # used and how the backend was set up still reach the manifest.
        bar.close()
        cache.close()
        write_manifest()
    return summary


def _check_same_model_version(store: RecordStore, backend: Backend) -> None:
    """ValueError when the run directory's records came from another version of this model or another server.

    Record keys hold the model spec but not its version: resuming with changed
    weights, template or server would mix two models' records under one name.
    """
    manifest = store.manifest()
    identity = getattr(backend, "response_identity", {})
    before = manifest.get("response_identity")
    if manifest.get("model") == backend.spec and before is not None and before != identity:
        raise ValueError(
            f"run directory {store.run_dir}: its records of {backend.spec} were made with {before}, "
            f"but the model now is {identity}; write this version's records to a new run directory"
        )


def _write_manifest(store, backend, datasets, summary, usage_before, *, methods, steerings, seed, limit, run_s) -> None:
    """Merge this invocation's facts into the run manifest; usage is ``usage_before`` plus this invocation's."""
    from distalign_data.prompts import TEMPLATE_VERSION
    from distalign_data.sources import UPSTREAM_COMMIT
    from distalign_data.sources import UPSTREAM_REPOSITORY

    usage = dict(usage_before)
    _add_usage(usage, summary.usage)
    describe = getattr(backend, "describe", None)
    store.update_manifest(
        {
            "model": backend.spec,
            "backend": backend.name,
            "backend_info": describe() if describe else {},
            "response_identity": getattr(backend, "response_identity", {}),
            "sampling": {m: backend.sampling_parameters(m) for m in methods},
            "seed": seed,
            "methods": list(methods),
            "steerings": list(steerings),
            "limit": limit,
            "package_version": __version__,
            "template_version": TEMPLATE_VERSION,
            "datasets": datasets,
            "upstream": {"repository": UPSTREAM_REPOSITORY, "commit": UPSTREAM_COMMIT},
            "usage": usage,
            "last_run_s": round(run_s, 3),
        }
    )


# ---------------------------------------------------------------------------
# command line

# Options forwarded to get_backend when given (each backend takes the ones it knows).
_BACKEND_OPTIONS = (
    "batch_size", "dtype", "device", "device_map", "max_new_tokens",
    "concurrency", "rpm", "tpm", "max_attempts", "timeout", "max_requests", "budget", "api_key_env", "prices",
)  # fmt: skip


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a model over benchmark rows and write run records",
        description="Run a model over benchmark rows (expression methods x steering methods) and write a run directory.",
    )
    parser.add_argument("--model", required=True, help="hf:<path-or-hub-id>, openai:<model>, openai-compatible:<base_url>#<model>, anthropic:<model>")
    parser.add_argument("--datasets", type=_csv, required=True, help="comma-separated dataset names")
    parser.add_argument("--methods", type=_csv, default=list(EXPRESSION_METHODS), help="comma-separated expression methods")
    parser.add_argument("--steering", type=_csv, default=list(STEERING_METHODS), help="comma-separated steering methods")
    parser.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each dataset")
    parser.add_argument("--seed", type=int, default=0, help="run seed (few-shot example draws, sampling)")
    parser.add_argument("--source", default=None, help="upstream data directory (default: DISTALIGN_SOURCE or the pinned download)")
    parser.add_argument("--cache-dir", default=None, help="response cache directory (default: the run directory)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    local = parser.add_argument_group("local models (hf:)")
    local.add_argument("--batch-size", default=None, help="auto (default) or a number")
    local.add_argument("--dtype", default=None, help="torch dtype, e.g. bfloat16 (default: the model's)")
    local.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    local.add_argument("--device-map", default=None, help='device map for large models, e.g. "auto"')
    local.add_argument("--max-new-tokens", type=int, default=None, help="generation length for sequence and verbalize")
    api = parser.add_argument_group("API models (openai:, openai-compatible:, anthropic:)")
    api.add_argument("--concurrency", type=int, default=None, help="requests in flight")
    api.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    api.add_argument("--tpm", type=float, default=None, help="tokens per minute limit")
    api.add_argument("--max-attempts", type=int, default=None, help="attempts per request before it fails for good")
    api.add_argument("--timeout", type=float, default=None, help="seconds per request")
    api.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    api.add_argument("--budget", type=float, default=None, help="stop before spending more than this (USD)")
    api.add_argument("--prices", default=None, help='JSON file of model prices, {"<model>": [input, output]} in USD per million tokens')
    api.add_argument("--api-key-env", default=None, help="name of the environment variable holding the API key")
    parser.set_defaults(func=_run_command)


def _run_command(args: Any) -> int:
    from distalign_data.benchmarks import load_rows

    # Bad methods, steerings or limit are refused before a (possibly large) model is loaded.
    plan_jobs([], args.methods, args.steering, args.model, args.seed)
    _limit_per_dataset([], args.limit)
    rows = [row for name in args.datasets for row in load_rows(name, source=args.source)]
    options = {name: getattr(args, name) for name in _BACKEND_OPTIONS if getattr(args, name) is not None}
    backend = get_backend(args.model, **options)
    try:
        summary = run(
            backend,
            rows,
            methods=args.methods,
            steerings=args.steering,
            run_dir=args.out,
            seed=args.seed,
            limit=args.limit,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
        )
    finally:
        backend.close()
    if getattr(backend, "is_main_process", True):
        print(json.dumps(dataclasses.asdict(summary), sort_keys=True))
    return 0
