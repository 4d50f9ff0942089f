"""Time per-row total variation plus a bootstrap interval of its mean, vectorised vs loop.

The vectorised path is the package's: ``total_variation`` over a ragged batch,
then ``bootstrap_mean_ci`` (one array of row indices per block of resamples).
The loop path is the straightforward way, as the paper's scripts work: a
Python loop over rows computing each TV, collected in a list, then one
``np.random.choice`` resample of that list per bootstrap iteration. Both run on
the same rows (Python lists of floats, as read from JSON or a dataset). The
loop's bootstrap runs ``--loop-resamples`` iterations and is extrapolated
linearly (it says so). Wall-clock and CPU times are both printed: on a shared
machine the CPU time is the steadier comparison.

Run: ``python benchmarks/bench_metrics.py`` (about 15 s on 2 cores).
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


class Clock:
    """Wall-clock and process CPU seconds of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def vectorised(references, predictions, n_resamples: int, seed: int):
    with Clock() as tv_clock:
        per_row = total_variation(references, predictions)
    with Clock() as bootstrap_clock:
        interval = bootstrap_mean_ci(per_row, n_resamples=n_resamples, seed=seed)
    return per_row, interval, tv_clock, bootstrap_clock


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

    runs = [vectorised(references, predictions, args.resamples, args.seed) for _ in range(args.repeats)]
    per_row, interval, tv_clock, bootstrap_clock = min(runs, key=lambda run: run[2].wall + run[3].wall)
    fast_wall = tv_clock.wall + bootstrap_clock.wall
    fast_cpu = tv_clock.cpu + bootstrap_clock.cpu
    print(
        f"vectorised TV + bootstrap CI: {fast_wall:.3f} s wall, {fast_cpu:.3f} s CPU "
        f"(TV {tv_clock.wall:.3f} s + bootstrap {bootstrap_clock.wall:.3f} s; fastest of {args.repeats}: "
        + ", ".join(f"{run[2].wall + run[3].wall:.3f}" for run in runs) + ")"
    )
    print(f"  mean TV {interval.mean:.6f}, 95% CI [{interval.ci_low:.6f}, {interval.ci_high:.6f}], seed {interval.seed}")

    with Clock() as rows_clock:
        tvs = loop_tv(references, predictions)
    with Clock() as resample_clock:
        means = loop_bootstrap(tvs, args.loop_resamples, args.seed)
    scale = args.resamples / args.loop_resamples
    slow_wall = rows_clock.wall + resample_clock.wall * scale
    slow_cpu = rows_clock.cpu + resample_clock.cpu * scale
    print(
        f"loop TV + np.random.choice bootstrap: {slow_wall:.3f} s wall, {slow_cpu:.3f} s CPU "
        f"(per-row loop {rows_clock.wall:.3f} s + {args.resamples:,} resamples x "
        f"{resample_clock.wall / args.loop_resamples * 1e3:.2f} ms"
        + (f"; timed on {args.loop_resamples} resamples and extrapolated linearly)" if scale != 1 else ")")
    )
    low, high = np.percentile(means, [2.5, 97.5])
    print(f"  mean TV {np.mean(tvs):.6f}, 95% CI [{low:.6f}, {high:.6f}] from its {len(means)} resamples")
    if not np.allclose(per_row, tvs, rtol=0, atol=1e-12):
        raise SystemExit("the two versions disagree on the per-row TVs")
    print(f"speed-up: {slow_wall / fast_wall:.1f}x wall clock, {slow_cpu / fast_cpu:.1f}x CPU time")


if __name__ == "__main__":
    main()
