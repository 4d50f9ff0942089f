"""Reference points for any set of rows: uniform, majority vote, and the discretization error.

Each baseline needs only the rows' reference distributions (``y_true``, a
ragged batch). The uniform and majority-vote baselines return per-row
predicted distributions, to be scored like a model's; the discretization error
returns per-row expected total variations. Both flow into the same statistics
(:mod:`distalign_data.statistics`).

These are the *corrected* baselines: the majority vote is a one-hot on the
human mode (the paper's code took the mode of a model's output), and the
discretization error covers every row (the paper's loop stopped at the first
reference that summed to 0).

>>> from distalign_data.distributions import total_variation
>>> total_variation([[0.7, 0.2, 0.1]], uniform_baseline([[0.7, 0.2, 0.1]])).round(4)
array([0.3667])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import comb

import numpy as np
from scipy.special import gammaln

from distalign_data.distributions import DEFAULT_ATOL, PaddedRows, as_padded

DEFAULT_SAMPLES = 30
DEFAULT_DRAWS = 1000
# Exact enumeration is used while a row has at most this many possible
# sample-count vectors (n = 30: up to 5 options).
DEFAULT_MAX_OUTCOMES = 50_000
DISCRETIZATION_METHODS = ("auto", "exact", "monte_carlo")
# Bounds the (rows × outcomes) and (draws × rows × options) work arrays.
_WORK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class DiscretizationError:
    """Expected TV between each reference and the empirical distribution of ``n_samples`` draws from it."""

    tv: np.ndarray
    exact: np.ndarray
    n_samples: int
    n_draws: int
    seed: int


def uniform_baseline(y_true, *, atol: float = DEFAULT_ATOL) -> list[np.ndarray]:
    """1/K over each row's K options.

    >>> uniform_baseline([[0.9, 0.1], [0.2, 0.3, 0.5]])
    [array([0.5, 0.5]), array([0.33333333, 0.33333333, 0.33333333])]
    """
    true = as_padded(y_true, name="y_true", atol=atol)
    values = true.mask / true.lengths[:, None]
    return PaddedRows(values=values, lengths=true.lengths).to_list()


def majority_vote_baseline(y_true, *, atol: float = DEFAULT_ATOL) -> list[np.ndarray]:
    """A one-hot on each row's human mode (ties go to the first tied option in the row's order).

    >>> majority_vote_baseline([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    [array([0., 1., 0.]), array([1., 0., 0.])]
    """
    true = as_padded(y_true, name="y_true", atol=atol)
    values = np.zeros_like(true.values)
    values[np.arange(len(true)), np.argmax(true.values, axis=1)] = 1.0
    return PaddedRows(values=values, lengths=true.lengths).to_list()


def _compositions(n: int, k: int) -> np.ndarray:
    """All count vectors of ``n`` draws over ``k`` options, shape ``(C(n+k-1, k-1), k)``."""
    bars = np.array(list(itertools.combinations(range(n + k - 1), k - 1)), dtype=np.intp).reshape(-1, k - 1)
    edges = np.hstack([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + k - 1)])
    return np.diff(edges, axis=1) - 1


def _exact_expected_tv(p: np.ndarray, n: int) -> np.ndarray:
    """E[TV(counts/n, p)] for rows ``p`` (all with the same number of options), by enumeration."""
    counts = _compositions(n, p.shape[1]).astype(np.float64)
    distance = 0.5 * np.abs(counts[None, :, :] / n - p[:, None, :]).sum(axis=2)
    # A zero-probability option with a positive count makes the outcome impossible:
    # a large finite penalty keeps 0 * log(0) out of the product and exp() at exactly 0.
    log_p = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -1e6)
    log_pmf = gammaln(n + 1) - gammaln(counts + 1).sum(axis=1) + log_p @ counts.T
    return (np.exp(log_pmf) * distance).sum(axis=1)


def discretization_error(
    y_true,
    *,
    n_samples: int = DEFAULT_SAMPLES,
    method: str = "auto",
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    max_outcomes: int = DEFAULT_MAX_OUTCOMES,
    atol: float = DEFAULT_ATOL,
) -> DiscretizationError:
    """Expected total variation of the empirical distribution of ``n_samples`` draws from each reference.

    It is the error a perfect sampler would still make when its output is
    ``n_samples`` letters (the paper's sequence method asks for 30). Lower is
    better; the range is [0, 1). ``method="exact"`` enumerates every count
    vector (multinomial probabilities times TV); ``"monte_carlo"`` averages
    ``n_draws`` seeded draws; ``"auto"`` is exact for rows with at most
    ``max_outcomes`` count vectors and Monte Carlo otherwise (``exact`` records
    which, per row).

    >>> result = discretization_error([[0.5, 0.5]], n_samples=2)
    >>> result.tv, result.exact
    (array([0.25]), array([ True]))
    """
    if method not in DISCRETIZATION_METHODS:
        raise ValueError(f"method must be one of {DISCRETIZATION_METHODS}, got {method!r}")
    if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not (isinstance(n_draws, int | np.integer) and n_draws >= 1):
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer (it is recorded with the result), got {seed!r}")
    true = as_padded(y_true, name="y_true", atol=atol)
    # Exact renormalisation keeps the multinomial sampler's sum check quiet.
    values = true.values / true.values.sum(axis=1, keepdims=True)
    outcomes = np.array([0.0] + [float(comb(n_samples + k - 1, k - 1)) for k in range(1, int(true.lengths.max()) + 1)])
    if method == "exact":
        too_many = np.flatnonzero(outcomes[true.lengths] > max_outcomes)
        if len(too_many):
            row = too_many[0]
            raise ValueError(
                f"y_true row {row}: {true.lengths[row]} options give {outcomes[true.lengths[row]]:.0f} count vectors "
                f"for n_samples={n_samples}, more than max_outcomes={max_outcomes}; use method='monte_carlo'"
            )
    exact = np.zeros(len(true), dtype=bool) if method == "monte_carlo" else outcomes[true.lengths] <= max_outcomes
    tv = np.empty(len(true))
    for k in np.unique(true.lengths[exact]):
        rows = np.flatnonzero(exact & (true.lengths == k))
        step = max(1, _WORK_ENTRIES // (int(outcomes[k]) * int(k)))
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            tv[chunk] = _exact_expected_tv(values[chunk, :k], n_samples)
    sampled = np.flatnonzero(~exact)
    rng = np.random.default_rng(seed)
    step = max(1, _WORK_ENTRIES // (n_draws * values.shape[1]))
    for start in range(0, len(sampled), step):
        chunk = sampled[start : start + step]
        p = values[chunk]
        counts = rng.multinomial(n_samples, p, size=(n_draws, len(chunk)))
        tv[chunk] = 0.5 * np.abs(counts / n_samples - p[None]).sum(axis=2).mean(axis=0)
    return DiscretizationError(tv=tv, exact=exact, n_samples=int(n_samples), n_draws=int(n_draws), seed=int(seed))
