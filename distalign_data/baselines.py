"""Reference points for any set of rows: uniform, majority vote, and the discretization error.

Each baseline needs only the rows' reference distributions (``y_true``, a
ragged batch). The uniform and majority-vote baselines return per-row
predicted distributions, to be scored like a model's; the discretization error
returns per-row expected total variations. Both flow into the same statistics
(:mod:`distalign_data.statistics`).

These are the *corrected* baselines: the majority vote is a one-hot on the
human mode (the paper's code took the mode of a model's output), and the
discretization error covers every row (the paper's loop stopped at the first
reference that summed to 0) and is exact by default (the paper used 1,000
Monte Carlo draws per row).

>>> from distalign_data.distributions import total_variation
>>> total_variation([[0.7, 0.2, 0.1]], uniform_baseline([[0.7, 0.2, 0.1]])).round(4)
array([0.3667])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from distalign_data.distributions import DEFAULT_ATOL, PaddedRows, as_padded

DEFAULT_SAMPLES = 30
DEFAULT_DRAWS = 1000
DISCRETIZATION_METHODS = ("exact", "monte_carlo")
# Bounds the (draws x rows x options) count array of the Monte Carlo method.
_WORK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class DiscretizationError:
    """Expected TV between each reference and the empirical distribution of ``n_samples`` draws from it."""

    tv: np.ndarray
    method: str
    n_samples: int
    n_draws: int | None
    seed: int | None


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


def _exact_expected_tv(p: np.ndarray, n: int) -> np.ndarray:
    """E[TV(counts/n, p)] per row of ``p``, in closed form.

    TV is ½ Σ_j |C_j/n − p_j| and each count C_j is marginally Binomial(n, p_j),
    so the expectation is ½ Σ_j E|C_j − n p_j| / n, and de Moivre's formula gives
    the binomial's mean absolute deviation: E|C − np| = 2 ν C(n, ν) p^ν (1 − p)^(n−ν+1)
    with ν = ⌊np⌋ + 1 (the same value either side of an integer np, so rounding
    in ⌊np⌋ does not matter). It is 0 for p = 0 and p = 1.
    """
    nu = np.floor(n * p) + 1
    inside = (p > 0) & (p < 1) & (nu <= n)
    safe_p = np.where(inside, p, 0.5)
    safe_nu = np.where(inside, nu, 1.0)
    log_deviation = (
        np.log(2 * safe_nu)
        + gammaln(n + 1) - gammaln(safe_nu + 1) - gammaln(n - safe_nu + 1)
        + safe_nu * np.log(safe_p)
        + (n - safe_nu + 1) * np.log1p(-safe_p)
    )
    deviation = np.where(inside, np.exp(log_deviation), 0.0)
    return 0.5 * deviation.sum(axis=1) / n


def discretization_error(
    y_true,
    *,
    n_samples: int = DEFAULT_SAMPLES,
    method: str = "exact",
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
) -> DiscretizationError:
    """Expected total variation of the empirical distribution of ``n_samples`` draws from each reference.

    It is the error a perfect sampler would still make when its output is
    ``n_samples`` letters (the paper's sequence method asks for 30). Lower is
    better; the range is [0, 1). ``method="exact"`` computes the expectation
    in closed form (per option, the binomial's mean absolute deviation), for
    any number of options; ``"monte_carlo"`` averages ``n_draws`` seeded
    multinomial draws, the way the paper estimated it (``n_draws`` and ``seed``
    are recorded only for this method).

    >>> discretization_error([[0.5, 0.5]], n_samples=2).tv
    array([0.25])
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
    if method == "exact":
        return DiscretizationError(
            tv=_exact_expected_tv(values, int(n_samples)), method=method, n_samples=int(n_samples), n_draws=None, seed=None
        )
    rng = np.random.default_rng(seed)
    tv = np.empty(len(true))
    step = max(1, _WORK_ENTRIES // (n_draws * values.shape[1]))
    for start in range(0, len(true), step):
        p = values[start : start + step]
        counts = rng.multinomial(n_samples, p, size=(n_draws, len(p)))
        tv[start : start + step] = 0.5 * np.abs(counts / n_samples - p[None]).sum(axis=2).mean(axis=0)
    return DiscretizationError(tv=tv, method=method, n_samples=int(n_samples), n_draws=int(n_draws), seed=int(seed))
