"""Throughput of the API runner against a loopback OpenAI-format server.

1,000 requests (distinct sequence prompts), 100 ms server latency per request,
concurrency 32. Prints the wall time over the ideal (1,000 x 0.1 s / 32) and over
a sequential run. The sequential run (concurrency 1) is measured on a subset of
``--sequential-subset`` requests and extrapolated linearly to 1,000 (it would
take 100 s otherwise); both runs happen in this one invocation.

The server runs in a child process so that it does not share the client's GIL.
The client's CPU time and the machine's load average are printed too: the client
needs about 1.5 ms of CPU a request (mostly the SDK's HTTP stack), so on a
machine whose cores are busy with other work the ratio grows.
What is timed is ``backend.generate`` (the engine and the SDK), with an
``on_output`` that only collects the outputs; ``--driver`` times the whole
``base.run`` (prompts, parsing, record store, cache) instead. One untimed warm-up
of ``concurrency`` requests goes first.

    python benchmarks/bench_api_runner.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.api_servers import serve_in_subprocess  # noqa: E402

from distalign_data.model_runners import base  # noqa: E402
from distalign_data.prompts import render_prompt  # noqa: E402


def _rows(n: int) -> list[dict]:
    return [
        {"id": f"bench-{i}/Male", "dataset": "opinionqa_subset", "question_id": f"bench-{i}",
         "question": f"Benchmark question number {i}?", "options": ["Yes", "No", "Not sure"],
         "group_attribute": "SEX", "group": "Male", "few_shot": []}
        for i in range(n)
    ]


def _timed(url: str, rows: list[dict], concurrency: int, driver: bool) -> tuple[float, int]:
    backend = base.get_backend(f"openai-compatible:{url}#scripted", concurrency=concurrency, timeout=30)
    if driver:
        started = time.perf_counter()
        summary = base.run(backend, rows, methods=["sequence"], steerings=["persona"], run_dir=tempfile.mkdtemp(),
                           seed=0, progress=False)
        return time.perf_counter() - started, summary.written
    jobs = base.plan_jobs(rows, ["sequence"], ["persona"], backend.spec, 0)
    work = [(job, render_prompt(job.row, job.method, job.steering, seed=job.seed)) for job in jobs]
    outputs = []
    started = time.perf_counter()
    backend.generate(work, lambda job, prompt, raw: outputs.append(raw))
    elapsed = time.perf_counter() - started
    if any(raw.error for raw in outputs):
        raise SystemExit("a request failed: the benchmark is void")
    return elapsed, len(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential-subset", type=int, default=50)
    parser.add_argument("--driver", action="store_true", help="time base.run (records, cache, parsing) too")
    args = parser.parse_args()
    process, url, conn = serve_in_subprocess("openai", latency_s=args.latency)
    try:
        rows = _rows(args.requests)
        # Warm-up (not timed): the SDK's imports and its response models are built
        # on first use, a one-off cost of about a second that is not throughput.
        _timed(url, [{**r, "id": "warm-" + r["id"]} for r in rows[: args.concurrency]], args.concurrency, False)
        cpu_started = time.process_time()
        wall, done = _timed(url, rows, args.concurrency, args.driver)
        cpu = time.process_time() - cpu_started
        subset = rows[: args.sequential_subset]
        sequential_subset, _ = _timed(url, [{**r, "id": "seq-" + r["id"]} for r in subset], 1, args.driver)
    finally:
        conn.send("stop")
        process.join(timeout=5)
    ideal = args.requests * args.latency / args.concurrency
    sequential = sequential_subset * args.requests / len(subset)
    print(f"requests: {done} at concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms"
          f"{' (whole driver: base.run)' if args.driver else ' (backend.generate)'}")
    print(f"wall time: {wall:.3f} s; client CPU {cpu:.3f} s ({1000 * cpu / done:.2f} ms a request); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"ideal (requests x latency / concurrency): {ideal:.3f} s -> wall / ideal = {wall / ideal:.3f}")
    print(f"sequential: {sequential_subset:.3f} s for {len(subset)} requests, extrapolated to {sequential:.3f} s "
          f"-> wall / sequential = {wall / sequential:.4f} (speed-up {sequential / wall:.1f}x)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
