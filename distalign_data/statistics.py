"""Bootstrap statistics over per-row scores (usually per-row total variation).

All resampling is seeded (``seed``, an int, recorded in every result) and
vectorised: each block of resamples is one ``(block, n)`` array of row indices
(:func:`bootstrap_indices`), never a Python loop per resample or per row.

A *score set* is either a 1-D sequence of per-row scores or a mapping
``dataset -> per-row scores``. A mapping is resampled dataset by dataset, and
the statistic is the mean of the dataset means, so each dataset weighs the
same whatever its size (the paper's Table 1a statistic).

Two protocols (see the project's protocol notes, section 7 and 9):

* ``"corrected"`` (default): the point estimate is the sample statistic and the
  interval is the percentile bootstrap interval.
* ``"paper"``: the point estimate is the *mean of the bootstrap statistics*, as
  the paper reports it; the paper's "±" is :attr:`BootstrapResult.half_width`,
  (P97.5 − P2.5)/2 at 95 %.

>>> result = bootstrap_mean_ci([0.1, 0.2, 0.3, 0.4], seed=0)
>>> round(result.mean, 6), result.n, result.seed, result.n_resamples
(0.25, 4, 0, 1000)
>>> bool(result.ci_low < 0.25 < result.ci_high)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from distalign_data.names import PROTOCOLS

DEFAULT_RESAMPLES = 1000
# Resamples are drawn in blocks of about this many indices: enough to amortise
# numpy's per-call cost, few enough to stay in cache and under 4 MB per array.
_BLOCK_ENTRIES = 400_000
# Rows per group in bootstrap_indices: one random byte picks a row in a group.
_GROUP = 256


@dataclass(frozen=True)
class BootstrapResult:
    """A mean (or mean of dataset means) with its bootstrap interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    seed: int
    n_resamples: int
    confidence: float
    protocol: str
    sample_mean: float
    bootstrap_mean: float
    n_by_dataset: dict[str, int] | None = None

    @property
    def half_width(self) -> float:
        """Half the interval's width: the paper's "±" value."""
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class PairedBootstrapResult:
    """The difference ``A(a) − A(b)`` between two systems scored on the same rows."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    mean_a: float
    mean_b: float
    n: int
    seed: int
    n_resamples: int
    confidence: float


@dataclass(frozen=True)
class KSGapResult:
    """Knowledge-to-simulation gap ``A(sequence)/A(verbalize) − 1`` with its interval."""

    mean: float
    ci_low: float
    ci_high: float
    a_sequence: float
    a_verbalize: float
    n_sequence: int
    n_verbalize: int
    paired: bool
    seed: int
    n_resamples: int
    confidence: float
    protocol: str


def _as_scores(values, name: str) -> np.ndarray:
    try:
        scores = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a 1-D sequence of numbers") from None
    if scores.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of per-row scores, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError(f"{name} is empty: at least one row is needed")
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise ValueError(
            f"{name} row {bad[0]}: is {scores[bad[0]]} ({len(bad)} non-finite rows); "
            "drop unscored rows before bootstrapping"
        )
    return scores


def _as_score_sets(values, name: str) -> dict[str, np.ndarray]:
    """A score set as ``{dataset: scores}`` (a plain sequence is one unnamed dataset)."""
    if isinstance(values, Mapping):
        if not values:
            raise ValueError(f"{name} is empty: at least one dataset is needed")
        return {str(key): _as_scores(scores, f"{name}[{key!r}]") for key, scores in values.items()}
    return {"": _as_scores(values, name)}


def _check_options(n_resamples: int, confidence: float, seed, protocol: str | None = None) -> None:
    if not (isinstance(n_resamples, int | np.integer) and n_resamples >= 1):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer (it is recorded with the result), got {seed!r}")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def bootstrap_indices(rng: np.random.Generator, n_resamples: int, n: int) -> np.ndarray:
    """Row indices of ``n_resamples`` bootstrap resamples of ``n`` rows: ``(n_resamples, n)`` int64.

    Every index is uniform on ``[0, n)`` and independent of the others, as in
    ``rng.integers(0, n, (n_resamples, n))``, but drawn in two steps that need
    fewer random bits: rows are split into groups of 256 (plus one smaller
    group for the remainder); a multinomial draw says how many of a
    resample's ``n`` draws fall in each group (probability size/n), and one
    random byte per draw picks the row inside a full group. Within a resample
    the indices come grouped, which does not change a mean and makes the
    gather cache-friendly.

    >>> draws = bootstrap_indices(np.random.default_rng(0), 2, 1000)
    >>> draws.shape, bool(draws.min() >= 0), bool(draws.max() < 1000)
    ((2, 1000), True, True)
    """
    full, remainder = divmod(n, _GROUP)
    sizes = np.array([_GROUP] * full + ([remainder] if remainder else []))
    starts = np.arange(len(sizes)) * _GROUP
    per_group = rng.multinomial(n, sizes / n, size=n_resamples)
    indices = np.repeat(np.tile(starts, n_resamples), per_group.ravel())
    offsets = rng.bit_generator.random_raw(-(-n_resamples * n // 8)).view(np.uint8)[: n_resamples * n]
    if remainder:
        # The remainder group's draws close each resample's run of n indices.
        in_last = per_group[:, -1]
        first = np.arange(1, n_resamples + 1) * n - in_last
        rank = np.arange(in_last.sum()) - np.repeat(np.cumsum(in_last) - in_last, in_last)
        positions = np.repeat(first, in_last) + rank
        offsets[positions] = rng.integers(0, remainder, size=len(positions))
    indices += offsets
    return indices.reshape(n_resamples, n)


def resample_means(columns: np.ndarray, *, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples of the rows of ``columns``.

    ``columns`` is ``(n,)`` or ``(n, m)``; every resample draws ``n`` row
    indices with replacement (:func:`bootstrap_indices`) and averages each
    column over the same rows (so ``m`` columns scored on the same rows stay
    paired). Returns ``(n_resamples,)`` or ``(n_resamples, m)``.

    >>> rng = np.random.default_rng(0)
    >>> resample_means(np.array([1.0, 1.0, 1.0]), n_resamples=2, rng=rng)
    array([1., 1.])
    """
    n = len(columns)
    block = min(n_resamples, max(1, _BLOCK_ENTRIES // n))
    # Reused across blocks: a fresh multi-megabyte array per block costs more
    # in page faults than the arithmetic.
    gathered = np.empty((block, n) + columns.shape[1:])
    out = np.empty((n_resamples,) + columns.shape[1:])
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        rows = bootstrap_indices(rng, size, n)
        # mode="clip" skips take's buffered bounds check; the indices are in range.
        np.take(columns, rows, axis=0, out=gathered[:size], mode="clip")
        out[start : start + size] = gathered[:size].sum(axis=1) / n
    return out


def _percentiles(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(
    values,
    *,
    protocol: str = "corrected",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Mean of per-row scores (or mean of dataset means) with a seeded percentile bootstrap interval.

    ``values`` is a 1-D sequence of per-row scores, or a mapping
    ``dataset -> scores`` (each dataset resampled separately; the statistic
    is the mean of the dataset means). For total variation, lower is better.

    With ``protocol="corrected"`` ``mean`` is the sample statistic; with
    ``protocol="paper"`` it is the mean of the bootstrap statistics, as the
    paper reports (its "±" is ``half_width``). ``ci_low``/``ci_high`` are the
    percentile interval in both.

    >>> tvs = {"opinionqa_subset": [0.2, 0.4], "nyt_books": [0.1, 0.1, 0.1, 0.1]}
    >>> result = bootstrap_mean_ci(tvs, seed=1)
    >>> round(result.mean, 6), result.n_by_dataset
    (0.2, {'opinionqa_subset': 2, 'nyt_books': 4})
    """
    _check_options(n_resamples, confidence, seed, protocol)
    sets = _as_score_sets(values, "values")
    rng = np.random.default_rng(seed)
    statistics = np.mean([resample_means(s, n_resamples=n_resamples, rng=rng) for s in sets.values()], axis=0)
    sample_mean = float(np.mean([s.mean() for s in sets.values()]))
    bootstrap_mean = float(statistics.mean())
    low, high = _percentiles(statistics, confidence)
    return BootstrapResult(
        mean=bootstrap_mean if protocol == "paper" else sample_mean,
        ci_low=low,
        ci_high=high,
        n=sum(len(s) for s in sets.values()),
        seed=int(seed),
        n_resamples=int(n_resamples),
        confidence=confidence,
        protocol=protocol,
        sample_mean=sample_mean,
        bootstrap_mean=bootstrap_mean,
        n_by_dataset={k: len(s) for k, s in sets.items()} if isinstance(values, Mapping) else None,
    )


def _paired_statistics(a, b, *, n_resamples, rng, names=("values_a", "values_b")):
    """Per-resample statistics of two paired score sets: ``(stat_a, stat_b)``, plus sample values."""
    sets_a = _as_score_sets(a, names[0])
    sets_b = _as_score_sets(b, names[1])
    if sets_a.keys() != sets_b.keys():
        raise ValueError(f"{names[0]} and {names[1]} must hold the same datasets: {sorted(sets_a)} vs {sorted(sets_b)}")
    per_set = []
    for key in sets_a:
        if len(sets_a[key]) != len(sets_b[key]):
            where = f"[{key!r}]" if key else ""
            raise ValueError(
                f"{names[0]}{where} has {len(sets_a[key])} rows but {names[1]}{where} has {len(sets_b[key])}; "
                "paired statistics need both scored on the same rows in the same order"
            )
        columns = np.column_stack([sets_a[key], sets_b[key]])
        per_set.append(resample_means(columns, n_resamples=n_resamples, rng=rng))
    statistics = np.mean(per_set, axis=0)
    sample_a = float(np.mean([s.mean() for s in sets_a.values()]))
    sample_b = float(np.mean([s.mean() for s in sets_b.values()]))
    n = sum(len(s) for s in sets_a.values())
    return statistics[:, 0], statistics[:, 1], sample_a, sample_b, n


def paired_bootstrap(
    values_a,
    values_b,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrapResult:
    """Paired bootstrap of ``A(a) − A(b)`` for two systems scored on the same rows.

    ``values_a[i]`` and ``values_b[i]`` must score the same row (per dataset,
    when mappings are given). Every resample draws one set of rows and uses it
    for both systems, so row difficulty cancels. For total variation a
    negative difference means system a is better (lower is better).

    The two-sided p-value tests "no difference": the bootstrap distribution of
    the difference is centred on zero and ``p = (1 + #{|d* − d| ≥ |d|}) /
    (n_resamples + 1)``, so it is never exactly 0.

    >>> result = paired_bootstrap([0.1, 0.2, 0.3, 0.2], [0.3, 0.4, 0.5, 0.4], seed=0)
    >>> round(result.mean, 6), round(result.ci_low, 6), round(result.ci_high, 6), result.p_value
    (-0.2, -0.2, -0.2, 0.000999000999000999)
    """
    _check_options(n_resamples, confidence, seed)
    rng = np.random.default_rng(seed)
    stat_a, stat_b, sample_a, sample_b, n = _paired_statistics(values_a, values_b, n_resamples=n_resamples, rng=rng)
    differences = stat_a - stat_b
    observed = sample_a - sample_b
    # Round-off in the resample means must not count as an extreme outcome.
    slack = 1e-12 * max(1.0, abs(observed))
    extreme = np.count_nonzero(np.abs(differences - observed) >= abs(observed) - slack) if observed else n_resamples
    low, high = _percentiles(differences, confidence)
    return PairedBootstrapResult(
        mean=observed,
        ci_low=low,
        ci_high=high,
        p_value=float((1 + extreme) / (n_resamples + 1)),
        mean_a=sample_a,
        mean_b=sample_b,
        n=n,
        seed=int(seed),
        n_resamples=int(n_resamples),
        confidence=confidence,
    )


def ks_gap(
    sequence_scores,
    verbalize_scores,
    *,
    paired: bool = True,
    protocol: str = "corrected",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> KSGapResult:
    """Knowledge-to-simulation gap ``A(sequence)/A(verbalize) − 1`` (the paper's Eq. 2) with an interval.

    The inputs are per-row scores (total variation) of the sequence and the
    verbalize method, plain or per dataset. The interval is the percentile
    interval of the gap over the same resamples: with ``paired=True`` (both
    methods scored on the same rows, in the same order) each resample uses one
    draw of rows for both; with ``paired=False`` the two sets are resampled
    independently. A positive gap means the model describes the distribution
    (verbalize) better than it samples from it (sequence); higher means a
    larger gap. ``protocol="paper"`` takes the ratio of the two bootstrap
    means, as the paper's Table 1b does; ``"corrected"`` the ratio of sample means.

    >>> result = ks_gap([0.3, 0.3, 0.3], [0.2, 0.2, 0.2], seed=0)
    >>> round(result.mean, 6), round(result.ci_low, 6), round(result.ci_high, 6)
    (0.5, 0.5, 0.5)
    """
    _check_options(n_resamples, confidence, seed, protocol)
    rng = np.random.default_rng(seed)
    if paired:
        stat_seq, stat_verb, sample_seq, sample_verb, n = _paired_statistics(
            sequence_scores, verbalize_scores, n_resamples=n_resamples, rng=rng,
            names=("sequence_scores", "verbalize_scores"),
        )
        n_seq = n_verb = n
    else:
        sets_seq = _as_score_sets(sequence_scores, "sequence_scores")
        sets_verb = _as_score_sets(verbalize_scores, "verbalize_scores")
        stat_seq = np.mean([resample_means(s, n_resamples=n_resamples, rng=rng) for s in sets_seq.values()], axis=0)
        stat_verb = np.mean([resample_means(s, n_resamples=n_resamples, rng=rng) for s in sets_verb.values()], axis=0)
        sample_seq = float(np.mean([s.mean() for s in sets_seq.values()]))
        sample_verb = float(np.mean([s.mean() for s in sets_verb.values()]))
        n_seq = sum(len(s) for s in sets_seq.values())
        n_verb = sum(len(s) for s in sets_verb.values())
    if protocol == "paper":
        a_seq, a_verb = float(stat_seq.mean()), float(stat_verb.mean())
    else:
        a_seq, a_verb = sample_seq, sample_verb
    if a_verb == 0 or np.any(stat_verb == 0):
        raise ValueError("verbalize_scores average to 0 in the sample or a resample; the gap ratio is undefined")
    low, high = _percentiles(stat_seq / stat_verb - 1, confidence)
    return KSGapResult(
        mean=a_seq / a_verb - 1,
        ci_low=low,
        ci_high=high,
        a_sequence=a_seq,
        a_verbalize=a_verb,
        n_sequence=n_seq,
        n_verbalize=n_verb,
        paired=paired,
        seed=int(seed),
        n_resamples=int(n_resamples),
        confidence=confidence,
        protocol=protocol,
    )
