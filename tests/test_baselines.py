"""Baselines: uniform, human-mode majority vote, discretization error (exact and Monte Carlo)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from distalign_data.baselines import discretization_error, majority_vote_baseline, uniform_baseline
from distalign_data.distributions import total_variation


def brute_force_expected_tv(p, n):
    """E[TV(counts/n, p)] by summing over every ordered sequence of n draws."""
    p = np.asarray(p, dtype=np.float64)
    total = 0.0
    for draws in itertools.product(range(len(p)), repeat=n):
        counts = np.bincount(draws, minlength=len(p))
        total += np.prod(p[list(draws)]) * 0.5 * np.abs(counts / n - p).sum()
    return total


def test_uniform_by_hand():
    result = uniform_baseline([[0.7, 0.2, 0.1], [0.9, 0.1]])
    np.testing.assert_allclose(result[0], [1 / 3] * 3)
    np.testing.assert_allclose(result[1], [0.5, 0.5])
    # TV to uniform of [0.7, 0.2, 0.1]: ½(0.3667 + 0.1333 + 0.2333) = 0.3667
    np.testing.assert_allclose(total_variation([[0.7, 0.2, 0.1]], result[:1]), [0.11 / 0.3], atol=1e-12)


def test_majority_vote_is_a_one_hot_on_the_human_mode():
    refs = [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.9]]
    result = majority_vote_baseline(refs)
    assert [row.tolist() for row in result] == [[0, 1, 0], [1, 0, 0], [0, 1]]
    # TV(one-hot on j, y) = 1 − y_j
    np.testing.assert_allclose(total_variation(refs, result), [0.5, 0.6, 0.1])


def test_exact_discretization_error_by_hand():
    # [0.5, 0.5], n = 2: counts (2,0), (1,1), (0,2) with probabilities ¼, ½, ¼ and TVs ½, 0, ½
    result = discretization_error([[0.5, 0.5]], n_samples=2)
    np.testing.assert_allclose(result.tv, [0.25], rtol=1e-12)
    assert (result.method, result.n_samples, result.seed) == ("exact", 2, None)
    # n = 1: E[1 − p_j] = 1 − Σ p², e.g. 1 − (0.36 + 0.16) = 0.48
    np.testing.assert_allclose(discretization_error([[0.6, 0.4]], n_samples=1).tv, [0.48])
    # a point mass is reproduced exactly by any number of draws
    assert discretization_error([[0.0, 1.0, 0.0]]).tv.tolist() == [0.0]


def test_exact_for_two_options_matches_a_binomial_sum():
    # Two options: TV = |C/n − p| with C ~ Binomial(n, p); summed directly over c = 0..30.
    from scipy.stats import binom

    for p in (0.1, 0.5, 1 / 3, 0.77):
        c = np.arange(31)
        expected = (binom.pmf(c, 30, p) * np.abs(c / 30 - p)).sum()
        np.testing.assert_allclose(discretization_error([[p, 1 - p]]).tv, [expected], rtol=1e-10)


def test_exact_matches_brute_force_enumeration():
    rng = np.random.default_rng(0)
    rows = [rng.dirichlet(np.ones(k)) for k in (2, 3, 4)] + [np.array([0.5, 0.0, 0.5]), np.array([0.2, 0.4, 0.4])]
    result = discretization_error(rows, n_samples=5, method="exact")
    np.testing.assert_allclose(result.tv, [brute_force_expected_tv(p, 5) for p in rows], rtol=1e-10)
    # many options, few draws: 12**3 ordered sequences
    wide = [rng.dirichlet(np.ones(12))]
    np.testing.assert_allclose(discretization_error(wide, n_samples=3).tv, [brute_force_expected_tv(wide[0], 3)], rtol=1e-10)


def test_monte_carlo_agrees_with_exact_and_is_seeded():
    rng = np.random.default_rng(1)
    rows = [rng.dirichlet(np.ones(k)) for k in rng.integers(2, 13, size=40)]
    exact = discretization_error(rows, method="exact")
    sampled = discretization_error(rows, method="monte_carlo", n_draws=4000, seed=3)
    assert (sampled.method, sampled.seed, sampled.n_draws) == ("monte_carlo", 3, 4000)
    # per-row TV of 30 draws has a standard deviation below 0.1: 4000 draws give SE < 0.0016
    np.testing.assert_allclose(sampled.tv, exact.tv, atol=0.008)
    assert abs(sampled.tv.mean() - exact.tv.mean()) < 0.002
    again = discretization_error(rows, method="monte_carlo", n_draws=4000, seed=3)
    np.testing.assert_array_equal(sampled.tv, again.tv)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "auto"}, r"^method must be one of \('exact', 'monte_carlo'\), got 'auto'$"),
        ({"n_samples": 0}, r"^n_samples must be a positive integer, got 0$"),
        ({"n_draws": -1}, r"^n_draws must be a positive integer, got -1$"),
        ({"seed": "0"}, r"^seed must be an integer"),
    ],
)
def test_discretization_error_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        discretization_error([np.full(12, 1 / 12)], **options)


def test_baselines_validate_references():
    with pytest.raises(ValueError, match=r"^y_true row 1: sums to 0.5"):
        uniform_baseline([[1.0], [0.5]])
    with pytest.raises(ValueError, match=r"^y_true row 0: entry 0 is negative"):
        majority_vote_baseline([[-0.5, 1.5]])
