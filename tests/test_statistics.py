"""Bootstrap statistics: hand-checkable cases, known limits, and independent approximations."""

from __future__ import annotations

from math import erf, sqrt

import numpy as np
import pytest

from distalign_data.statistics import (
    BootstrapResult,
    bootstrap_indices,
    bootstrap_mean_ci,
    ks_gap,
    paired_bootstrap,
    resample_means,
)


def normal_two_sided_p(z: float) -> float:
    return 2 * (1 - 0.5 * (1 + erf(abs(z) / sqrt(2))))


# ---------------------------------------------------------------- row index draws


@pytest.mark.parametrize("n", [7, 256, 1000, 1300])
def test_bootstrap_indices_are_uniform_over_rows_and_seeded(n):
    # 7: only a remainder group; 256: one full group; 1000 and 1300: full groups plus a remainder.
    draws = bootstrap_indices(np.random.default_rng(0), 2000, n)
    assert draws.shape == (2000, n) and draws.dtype == np.int64
    counts = np.bincount(draws.ravel(), minlength=n)
    assert len(counts) == n
    expected = draws.size / n
    chi_square = ((counts - expected) ** 2 / expected).sum()
    # chi-square with n - 1 degrees of freedom: mean n - 1, sd sqrt(2 (n - 1)); 5 sd is far out
    assert abs(chi_square - (n - 1)) < 5 * sqrt(2 * (n - 1))
    np.testing.assert_array_equal(draws, bootstrap_indices(np.random.default_rng(0), 2000, n))
    assert not np.array_equal(draws, bootstrap_indices(np.random.default_rng(1), 2000, n))


def test_bootstrap_indices_are_independent_within_a_resample():
    # With n = 2 every resample is two fair coin flips: sums 0, 1, 2 with ¼, ½, ¼.
    sums = bootstrap_indices(np.random.default_rng(2), 40_000, 2).sum(axis=1)
    np.testing.assert_allclose(np.bincount(sums) / len(sums), [0.25, 0.5, 0.25], atol=0.01)
    # Across groups: with n = 512 (two full groups) the number of draws in the first
    # group is binomial(512, ½): mean 256, variance 128.
    draws = bootstrap_indices(np.random.default_rng(3), 4000, 512)
    first_group = (draws < 256).sum(axis=1)
    assert first_group.mean() == pytest.approx(256, abs=1.0)
    assert first_group.var() == pytest.approx(128, rel=0.1)


def test_resample_means_of_two_values_follow_the_binomial_law():
    # Resampling [0, 1] twice: means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    means = resample_means(np.array([0.0, 1.0]), n_resamples=20_000, rng=np.random.default_rng(0))
    shares = [np.mean(means == value) for value in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(shares, [0.25, 0.5, 0.25], atol=0.015)


def test_resample_means_keep_columns_paired():
    columns = np.column_stack([np.arange(10.0), np.arange(10.0) + 3])
    means = resample_means(columns, n_resamples=200, rng=np.random.default_rng(0))
    np.testing.assert_allclose(means[:, 1] - means[:, 0], 3.0)


# ---------------------------------------------------------------- mean and its interval


def test_corrected_mean_is_the_sample_mean_and_records_its_settings():
    result = bootstrap_mean_ci([0.1, 0.2, 0.6], n_resamples=500, seed=7, confidence=0.9)
    assert isinstance(result, BootstrapResult)
    assert result.mean == pytest.approx(0.3, abs=1e-15)
    assert (result.n, result.seed, result.n_resamples, result.confidence, result.protocol) == (3, 7, 500, 0.9, "corrected")
    assert result.ci_low <= result.mean <= result.ci_high
    assert result.n_by_dataset is None


def test_same_seed_same_interval_other_seed_other_interval():
    values = np.random.default_rng(0).random(300)
    a = bootstrap_mean_ci(values, seed=11)
    b = bootstrap_mean_ci(values, seed=11)
    c = bootstrap_mean_ci(values, seed=12)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_constant_values_give_a_degenerate_interval():
    result = bootstrap_mean_ci([0.25] * 40, seed=0)
    assert result.ci_low == pytest.approx(0.25) and result.ci_high == pytest.approx(0.25)


def test_interval_width_matches_the_normal_approximation():
    # For a mean of n iid values the bootstrap 95 % interval is about ±1.96 s/√n.
    values = np.random.default_rng(1).exponential(size=4000)
    result = bootstrap_mean_ci(values, n_resamples=4000, seed=2)
    expected_half_width = 1.96 * values.std() / np.sqrt(len(values))
    assert result.half_width == pytest.approx(expected_half_width, rel=0.08)
    assert result.bootstrap_mean == pytest.approx(values.mean(), abs=0.25 * expected_half_width)


def test_dataset_means_are_weighted_equally_and_resampled_separately():
    # Each dataset constant: every resample's statistic is (0.2 + 0.6) / 2 = 0.4 exactly,
    # whereas pooling the 8 rows would give 0.45 and a resample-dependent value.
    values = {"opinionqa_subset": [0.2] * 3, "nyt_books": [0.6] * 5}
    result = bootstrap_mean_ci(values, seed=0)
    assert result.mean == pytest.approx(0.4)
    assert result.ci_low == pytest.approx(0.4) and result.ci_high == pytest.approx(0.4)
    assert result.n == 8 and result.n_by_dataset == {"opinionqa_subset": 3, "nyt_books": 5}


def test_paper_protocol_reports_the_bootstrap_mean_and_half_width():
    values = {"a": np.random.default_rng(2).random(50), "b": np.random.default_rng(3).random(20) ** 3}
    paper = bootstrap_mean_ci(values, protocol="paper", seed=5)
    corrected = bootstrap_mean_ci(values, protocol="corrected", seed=5)
    # same resamples, different point estimate
    assert (paper.ci_low, paper.ci_high) == (corrected.ci_low, corrected.ci_high)
    assert paper.mean == paper.bootstrap_mean != corrected.mean
    assert corrected.mean == pytest.approx((values["a"].mean() + values["b"].mean()) / 2, abs=1e-15)
    assert paper.half_width == pytest.approx((paper.ci_high - paper.ci_low) / 2)
    # the paper's statistic reproduced with an explicit loop over the same index draws
    rng = np.random.default_rng(5)
    draws_a = resample_means(values["a"], n_resamples=1000, rng=rng)
    draws_b = resample_means(values["b"], n_resamples=1000, rng=rng)
    statistics = (draws_a + draws_b) / 2
    assert paper.mean == pytest.approx(statistics.mean(), abs=1e-15)
    low, high = np.percentile(statistics, [2.5, 97.5])
    assert (paper.ci_low, paper.ci_high) == pytest.approx((low, high), abs=1e-15)


# ---------------------------------------------------------------- paired bootstrap


def test_paired_constant_difference():
    result = paired_bootstrap([0.1, 0.2, 0.3, 0.2], [0.3, 0.4, 0.5, 0.4], n_resamples=999, seed=0)
    assert result.mean == pytest.approx(-0.2)
    assert result.ci_low == pytest.approx(-0.2) and result.ci_high == pytest.approx(-0.2)
    assert result.p_value == pytest.approx(1 / 1000)
    assert (result.mean_a, result.mean_b, result.n, result.seed, result.n_resamples) == pytest.approx((0.2, 0.4, 4, 0, 999))


def test_paired_identical_systems_have_p_value_one():
    values = np.random.default_rng(0).random(100)
    result = paired_bootstrap(values, values, seed=0)
    assert result.mean == 0.0 and result.p_value == 1.0


def test_paired_p_value_agrees_with_the_normal_approximation():
    rng = np.random.default_rng(4)
    difficulty = rng.random(2000)
    a = difficulty + rng.normal(0, 0.2, 2000)
    b = difficulty + 0.012 + rng.normal(0, 0.2, 2000)
    result = paired_bootstrap(a, b, n_resamples=4000, seed=1)
    differences = a - b
    z = differences.mean() / (differences.std() / np.sqrt(len(differences)))
    assert result.p_value == pytest.approx(normal_two_sided_p(z), abs=0.03)
    assert result.ci_low < result.mean < result.ci_high


def test_pairing_narrows_the_interval_when_rows_share_difficulty():
    rng = np.random.default_rng(5)
    difficulty = rng.random(500)
    a = difficulty + rng.normal(0, 0.01, 500)
    b = difficulty + 0.02 + rng.normal(0, 0.01, 500)
    paired = paired_bootstrap(a, b, seed=0)
    unpaired_half_width = np.hypot(bootstrap_mean_ci(a, seed=1).half_width, bootstrap_mean_ci(b, seed=2).half_width)
    assert (paired.ci_high - paired.ci_low) / 2 < unpaired_half_width / 5
    assert paired.p_value < 0.01


def test_paired_per_dataset():
    a = {"x": [0.1, 0.1], "y": [0.5, 0.5, 0.5]}
    b = {"x": [0.2, 0.2], "y": [0.7, 0.7, 0.7]}
    result = paired_bootstrap(a, b, seed=0)
    # (0.1 + 0.5)/2 − (0.2 + 0.7)/2 = −0.15
    assert result.mean == pytest.approx(-0.15)


# ---------------------------------------------------------------- knowledge-to-simulation gap


def test_ks_gap_by_hand():
    # A(sequence) = 0.3, A(verbalize) = 0.2: 0.3 / 0.2 − 1 = 0.5
    result = ks_gap([0.3, 0.3, 0.3], [0.2, 0.2, 0.2], seed=3)
    assert result.mean == pytest.approx(0.5)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.5, 0.5))
    assert (result.a_sequence, result.a_verbalize, result.paired, result.seed) == pytest.approx((0.3, 0.2, True, 3))


def test_ks_gap_interval_comes_from_the_same_resamples():
    rng = np.random.default_rng(6)
    seq = rng.random(300) * 0.5 + 0.2
    verb = seq * 0.8 + rng.normal(0, 0.01, 300)
    result = ks_gap(seq, verb, n_resamples=2000, seed=9)
    # the same draws, by hand
    draws = resample_means(np.column_stack([seq, verb]), n_resamples=2000, rng=np.random.default_rng(9))
    gaps = draws[:, 0] / draws[:, 1] - 1
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(np.percentile(gaps, [2.5, 97.5])), abs=1e-12)
    assert result.mean == pytest.approx(seq.mean() / verb.mean() - 1)
    # verbalize is 0.8 of sequence on every row, so the paired gap is tight around 0.25
    assert result.ci_high - result.ci_low < 0.02
    unpaired = ks_gap(seq, verb, paired=False, n_resamples=2000, seed=9)
    assert unpaired.ci_high - unpaired.ci_low > 5 * (result.ci_high - result.ci_low)


def test_ks_gap_paper_protocol_uses_bootstrap_means():
    seq = {"a": [0.3, 0.5, 0.4], "b": [0.6, 0.2]}
    verb = {"a": [0.2, 0.3, 0.2], "b": [0.3, 0.1]}
    result = ks_gap(seq, verb, paired=False, protocol="paper", seed=0)
    rng = np.random.default_rng(0)
    stat_seq = np.mean([resample_means(np.array(v), n_resamples=1000, rng=rng) for v in seq.values()], axis=0)
    stat_verb = np.mean([resample_means(np.array(v), n_resamples=1000, rng=rng) for v in verb.values()], axis=0)
    assert result.mean == pytest.approx(stat_seq.mean() / stat_verb.mean() - 1, abs=1e-12)
    assert result.n_sequence == result.n_verbalize == 5


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_mean_ci([]), r"^values is empty"),
        (lambda: bootstrap_mean_ci({}), r"^values is empty: at least one dataset"),
        (lambda: bootstrap_mean_ci([0.1, np.nan, 0.2]), r"^values row 1: is nan \(1 non-finite rows\); drop unscored rows"),
        (lambda: bootstrap_mean_ci({"nyt_books": [0.1, np.inf]}), r"^values\['nyt_books'\] row 1: is inf"),
        (lambda: bootstrap_mean_ci([[0.1, 0.2]]), r"expected a 1-D sequence of per-row scores, got shape \(1, 2\)"),
        (lambda: bootstrap_mean_ci(["a"]), r"^values: expected a 1-D sequence of numbers$"),
        (lambda: bootstrap_mean_ci([0.1], n_resamples=0), r"^n_resamples must be a positive integer, got 0$"),
        (lambda: bootstrap_mean_ci([0.1], confidence=95), r"^confidence must lie strictly between 0 and 1, got 95$"),
        (lambda: bootstrap_mean_ci([0.1], seed=None), r"^seed must be an integer \(it is recorded with the result\), got None$"),
        (lambda: bootstrap_mean_ci([0.1], protocol="published"), r"^protocol must be one of"),
        (lambda: paired_bootstrap([0.1, 0.2], [0.1]), r"^values_a has 2 rows but values_b has 1; paired statistics need"),
        (lambda: paired_bootstrap({"a": [0.1]}, {"b": [0.1]}), r"must hold the same datasets"),
        (lambda: ks_gap([0.1], [0.0]), r"verbalize_scores average to 0"),
        (lambda: ks_gap([0.1, 0.2], [0.1], paired=True), r"^sequence_scores has 2 rows but verbalize_scores has 1"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
