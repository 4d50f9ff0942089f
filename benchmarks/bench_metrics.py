"""Time per-row total variation plus a bootstrap interval of its mean, vectorised vs loop.

The vectorised path is the package's: ``total_variation`` over a ragged batch,
then ``bootstrap_mean_ci`` (one index draw per block of resamples). The loop
path is the straightforward way, as the paper's scripts work: a Python loop
over rows computing each TV, collected in a list, then one
``np.random.choice`` resample of that list per bootstrap iteration. Both run on
the same rows (Python lists of floats, as read from JSON or a dataset).

Run: ``python benchmarks/bench_metrics.py`` (about half a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from distalign_data.distributions import total_variation
from distalign_data.statistics import bootstrap_mean_ci


def make_rows(n_rows: int, seed: int) -> tuple[list[list[float]], list[list[float]]]:
    """Reference and predicted distributions with 2 to 12 options per row."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 13, size=n_rows)
    references, predictions = [], []
    for k in lengths:
        references.append(rng.dirichlet(np.ones(k)).tolist())
        predictions.append(rng.dirichlet(np.ones(k)).tolist())
    return references, predictions


def vectorised(references, predictions, n_resamples: int, seed: int):
    start = time.perf_counter()
    per_row = total_variation(references, predictions)
    middle = time.perf_counter()
    interval = bootstrap_mean_ci(per_row, n_resamples=n_resamples, seed=seed)
    return per_row, interval, (middle - start, time.perf_counter() - middle)


def loop_tv(references, predictions) -> list[float]:
    tvs = []
    for reference, prediction in zip(references, predictions):
        tvs.append(0.5 * np.sum(np.abs(np.array(prediction) - np.array(reference))))
    return tvs


def loop_bootstrap(tvs: list[float], n_resamples: int, seed: int) -> list[float]:
    np.random.seed(seed)
    means = []
    for _ in range(n_resamples):
        means.append(np.mean(np.random.choice(tvs, size=len(tvs), replace=True)))
    return means


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--loop-resamples", type=int, default=100,
        help="resamples actually run by the loop version; its time is extrapolated linearly to --resamples",
    )
    parser.add_argument("--repeats", type=int, default=3, help="vectorised runs; the fastest is reported")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    references, predictions = make_rows(args.rows, args.seed)
    print(f"{args.rows:,} rows with 2-12 options (Python lists), {args.resamples:,} bootstrap resamples")

    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        per_row, interval, parts = vectorised(references, predictions, args.resamples, args.seed)
        runs.append((time.perf_counter() - start, parts))
    fast, (tv_time, bootstrap_time) = min(runs)
    print(
        f"vectorised TV + bootstrap CI: {fast:.3f} s (TV {tv_time:.3f} s + bootstrap {bootstrap_time:.3f} s; "
        f"fastest of {args.repeats}: " + ", ".join(f"{t:.3f}" for t, _ in runs) + ")"
    )
    print(f"  mean TV {interval.mean:.6f}, 95% CI [{interval.ci_low:.6f}, {interval.ci_high:.6f}], seed {interval.seed}")

    start = time.perf_counter()
    tvs = loop_tv(references, predictions)
    loop_rows = time.perf_counter() - start
    start = time.perf_counter()
    means = loop_bootstrap(tvs, args.loop_resamples, args.seed)
    loop_resample = (time.perf_counter() - start) / args.loop_resamples
    slow = loop_rows + loop_resample * args.resamples
    extrapolated = args.loop_resamples != args.resamples
    print(
        f"loop TV + np.random.choice bootstrap: {slow:.3f} s "
        f"(per-row loop {loop_rows:.3f} s + {args.resamples:,} resamples x {loop_resample * 1e3:.2f} ms"
        + (f", timed on {args.loop_resamples} resamples and extrapolated linearly)" if extrapolated else ")")
    )
    low, high = np.percentile(means, [2.5, 97.5])
    print(f"  mean TV {np.mean(tvs):.6f}, 95% CI [{low:.6f}, {high:.6f}] from its {len(means)} resamples")
    if not np.allclose(per_row, tvs, rtol=0, atol=1e-12):
        raise SystemExit("the two versions disagree on the per-row TVs")
    print(f"speed-up: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
