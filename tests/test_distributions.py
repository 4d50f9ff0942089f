"""Distances and validation in distalign_data.distributions.

Expected values are worked out by hand in the comments, or come from scipy
(``jensenshannon``, ``wasserstein_distance``, ``entropy``) computed row by row.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance

from distalign_data.distributions import (
    align,
    as_padded,
    check_distributions,
    jensen_shannon_distance,
    kl_divergence,
    mean_total_variation,
    pad_rows,
    total_variation,
    wasserstein_ordinal,
)


def random_rows(n_rows: int, seed: int, *, zeros: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ragged pairs of distributions with 2-12 options; some entries set to exactly 0."""
    rng = np.random.default_rng(seed)
    true, pred = [], []
    for k in rng.integers(2, 13, size=n_rows):
        rows = []
        for _ in range(2):
            row = rng.dirichlet(np.ones(k))
            if zeros and k > 2 and rng.random() < 0.5:
                row[rng.integers(k)] = 0.0
                row /= row.sum()
            rows.append(row)
        true.append(rows[0])
        pred.append(rows[1])
    return true, pred


# ---------------------------------------------------------------- total variation


def test_total_variation_by_hand():
    # row 0: ½(|0.5-1| + |0.5-0|) = 0.5; row 1: ½(0 + 0.2 + 0.2) = 0.2; row 2: disjoint = 1
    y_true = [[0.5, 0.5], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0, 0.0]]
    y_pred = [[1.0, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 0.5, 0.5]]
    np.testing.assert_allclose(total_variation(y_true, y_pred), [0.5, 0.2, 1.0], atol=1e-15)
    assert mean_total_variation(y_true, y_pred) == pytest.approx(1.7 / 3, abs=1e-15)


def test_total_variation_matches_a_plain_loop_on_ragged_rows():
    y_true, y_pred = random_rows(500, seed=1)
    expected = [0.5 * sum(abs(a - b) for a, b in zip(t, p)) for t, p in zip(y_true, y_pred)]
    np.testing.assert_allclose(total_variation(y_true, y_pred), expected, rtol=0, atol=1e-14)


def test_input_forms_agree():
    y_true = [[0.25, 0.75], [0.5, 0.5]]
    y_pred = [[0.5, 0.5], [0.0, 1.0]]
    expected = [0.25, 0.5]
    as_lists = total_variation(y_true, y_pred)
    as_arrays = total_variation([np.array(r) for r in y_true], [np.array(r) for r in y_pred])
    as_2d = total_variation(np.array(y_true), np.array(y_pred))
    as_tuples = total_variation(tuple(map(tuple, y_true)), tuple(map(tuple, y_pred)))
    as_generator = total_variation((r for r in y_true), (r for r in y_pred))
    object_rows = np.empty(2, dtype=object)  # a ragged column, as pandas holds it
    object_rows[0], object_rows[1] = np.array(y_true[0]), np.array(y_true[1])
    as_object_array = total_variation(object_rows, y_pred)
    for result in (as_lists, as_arrays, as_2d, as_tuples, as_generator, as_object_array):
        np.testing.assert_allclose(result, expected, atol=1e-15)


def test_unnormalised_rows_scored_as_given_with_check_sum_false():
    # The paper's all-zero parse: ½ Σ y = 0.5 whatever y is.
    assert total_variation([[0.2, 0.3, 0.5]], [[0.0, 0.0, 0.0]], check_sum=False).tolist() == [0.5]
    # truncated percentages 0.33 + 0.33 + 0.33: ½(0.17 + 0.03 + 0.13) = 0.165
    result = total_variation([[0.5, 0.3, 0.2]], [[0.33, 0.33, 0.33]], check_sum=False)
    np.testing.assert_allclose(result, [0.165], atol=1e-12)


def test_normalize_rescales_rows():
    # [2, 2] -> [0.5, 0.5]; [1, 3] -> [0.25, 0.75]; TV = 0.25
    np.testing.assert_allclose(total_variation([[2, 2]], [[1, 3]], normalize=True), [0.25])


def test_sum_tolerance_accepts_float32_rounding():
    row = np.array([0.1, 0.2, 0.7], dtype=np.float32).astype(np.float64)
    assert abs(row.sum() - 1) > 0  # float32 rounding really is present
    assert total_variation([row], [row]).tolist() == [0.0]


def test_padded_rows_round_trip():
    padded = pad_rows([[0.1, 0.9], [0.2, 0.3, 0.5]])
    assert padded.values.shape == (2, 3)
    assert padded.mask.tolist() == [[True, True, False], [True, True, True]]
    assert [row.tolist() for row in padded.to_list()] == [[0.1, 0.9], [0.2, 0.3, 0.5]]


# ---------------------------------------------------------------- Jensen-Shannon, Wasserstein, KL


def test_jensen_shannon_matches_scipy_base_2():
    y_true, y_pred = random_rows(300, seed=2)
    expected = [jensenshannon(t, p, base=2) for t, p in zip(y_true, y_pred)]
    np.testing.assert_allclose(jensen_shannon_distance(y_true, y_pred), expected, rtol=0, atol=1e-12)


def test_jensen_shannon_by_hand():
    # p = [1, 0], q = [0.5, 0.5]: m = [0.75, 0.25];
    # KL(p‖m) = log2(4/3); KL(q‖m) = ½log2(2/3) + ½log2(2) ; JS² = ½ of their sum.
    js2 = 0.5 * (np.log2(4 / 3) + 0.5 * np.log2(2 / 3) + 0.5 * np.log2(2))
    result = jensen_shannon_distance([[1.0, 0.0]], [[0.5, 0.5]])
    np.testing.assert_allclose(result, [np.sqrt(js2)], atol=1e-15)


def test_wasserstein_default_positions_match_scipy():
    y_true, y_pred = random_rows(300, seed=3)
    expected = [
        wasserstein_distance(np.arange(len(t)), np.arange(len(t)), t, p) / (len(t) - 1)
        for t, p in zip(y_true, y_pred)
    ]
    np.testing.assert_allclose(wasserstein_ordinal(y_true, y_pred), expected, rtol=0, atol=1e-12)


def test_wasserstein_with_unsorted_ordinal_values_matches_scipy():
    y_true, y_pred = random_rows(200, seed=4)
    rng = np.random.default_rng(5)
    values = [rng.permutation(rng.normal(size=len(t)) * 3) for t in y_true]
    expected = [
        wasserstein_distance(v, v, t, p) / (v.max() - v.min()) for t, p, v in zip(y_true, y_pred, values)
    ]
    np.testing.assert_allclose(wasserstein_ordinal(y_true, y_pred, ordinal_values=values), expected, atol=1e-12)


def test_wasserstein_by_hand():
    # all mass moves from position 0 to 2 of a 0..2 scale: 2 / 2 = 1; to position 1: 1 / 2
    np.testing.assert_allclose(
        wasserstein_ordinal([[1, 0, 0], [1, 0, 0], [0.5, 0.5]], [[0, 0, 1], [0, 1, 0], [0.5, 0.5]]), [1.0, 0.5, 0.0]
    )
    # positions 1, 4, 5: moving all mass from 1 to 4 costs 3 out of 4
    np.testing.assert_allclose(wasserstein_ordinal([[1, 0, 0]], [[0, 1, 0]], ordinal_values=[[1, 4, 5]]), [0.75])
    # a single option: nothing to move
    assert wasserstein_ordinal([[1.0]], [[1.0]]).tolist() == [0.0]


def test_kl_matches_scipy_entropy_with_smoothing():
    y_true, y_pred = random_rows(200, seed=6)
    eps = 1e-3
    expected = [entropy(t, (p + eps) / (1 + len(p) * eps)) for t, p in zip(y_true, y_pred)]
    np.testing.assert_allclose(kl_divergence(y_true, y_pred, smoothing=eps), expected, rtol=1e-12, atol=1e-14)
    expected_bits = [entropy(t, p, base=2) for t, p in zip(y_true, y_pred)]
    np.testing.assert_allclose(kl_divergence(y_true, y_pred, smoothing=0.0, base=2), expected_bits, rtol=1e-12)


def test_kl_unsmoothed_is_infinite_where_the_prediction_misses_mass():
    # KL([0.5, 0.5] ‖ [1, 0]) = inf; smoothing 0.01 gives ½ln(0.5/(1.01/1.02)) + ½ln(0.5/(0.01/1.02))
    assert kl_divergence([[0.5, 0.5]], [[1.0, 0.0]], smoothing=0.0).tolist() == [np.inf]
    expected = 0.5 * np.log(0.5 / (1.01 / 1.02)) + 0.5 * np.log(0.5 / (0.01 / 1.02))
    np.testing.assert_allclose(kl_divergence([[0.5, 0.5]], [[1.0, 0.0]], smoothing=0.01), [expected])


# ---------------------------------------------------------------- properties

def _normalised(row):
    array = np.asarray(row, dtype=np.float64)
    return array / array.sum()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_tv_and_js_properties(data):
    k = data.draw(st.integers(min_value=2, max_value=12))
    rows = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=k, max_size=k).filter(lambda r: sum(r) > 1e-3)
    p = _normalised(data.draw(rows))
    q = _normalised(data.draw(rows))
    tv_pq = total_variation([p], [q])[0]
    tv_qp = total_variation([q], [p])[0]
    assert 0.0 <= tv_pq <= 1.0 + 1e-12
    assert tv_pq == pytest.approx(tv_qp, abs=1e-15)
    assert total_variation([p], [p])[0] == 0.0
    if not np.allclose(p, q, atol=1e-9, rtol=0):
        assert tv_pq > 0
    js = jensen_shannon_distance([p], [q])[0]
    assert 0.0 <= js <= 1.0 + 1e-12
    assert js == pytest.approx(jensen_shannon_distance([q], [p])[0], abs=1e-12)
    assert 0.0 <= wasserstein_ordinal([p], [q])[0] <= 1.0 + 1e-12
    # TV bounds JS from above in this normalisation: JS² <= TV (both in [0, 1], base 2)
    assert js**2 <= tv_pq + 1e-9


# ---------------------------------------------------------------- align


def test_align_reorders_by_text_and_fills_missing_with_zero():
    result = align(["Refused", "No", "Yes"], [0.1, 0.3, 0.6], ["Yes", "No", "Refused", "Don't know"])
    np.testing.assert_array_equal(result, [0.6, 0.3, 0.1, 0.0])


def test_align_accepts_a_dict():
    np.testing.assert_array_equal(align(None, {"b": 0.25, "a": 0.75}, ["a", "b", "c"]), [0.75, 0.25, 0.0])


def test_align_extra_option_with_mass_is_an_error_unless_dropped():
    with pytest.raises(ValueError, match=r"option 'Maybe' \(mass 0.2\) is not among options_to"):
        align(["Yes", "Maybe"], [0.8, 0.2], ["Yes", "No"])
    np.testing.assert_array_equal(align(["Yes", "Maybe"], [0.8, 0.2], ["Yes", "No"], drop_extra=True), [0.8, 0.0])
    # an extra option with no mass loses nothing
    np.testing.assert_array_equal(align(["Yes", "Maybe"], [1.0, 0.0], ["Yes", "No"]), [1.0, 0.0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["A", "A"], [0.5, 0.5], ["A"]), r"options_from lists 'A' twice \(positions 0 and 1\)"),
        ((["A"], [1.0], ["A", "B", "A"]), r"options_to lists 'A' twice \(positions 0 and 2\)"),
        ((["A", "B"], [1.0], ["A", "B"]), r"probs has shape \(1,\) but options_from has 2 options"),
        ((None, [1.0], ["A"]), r"options_from is required"),
    ],
)
def test_align_rejects_malformed_input(args, message):
    with pytest.raises(ValueError, match=message):
        align(*args)


# ---------------------------------------------------------------- validation


MALFORMED = [
    # (function, y_true, y_pred, keyword options, message)
    ("empty batch", total_variation, [], [], {}, r"^y_true is empty: at least one row is needed$"),
    ("row count", total_variation, [[1.0], [1.0]], [[1.0]], {}, r"^y_true has 2 rows but y_pred has 1$"),
    ("option count", total_variation, [[1.0], [0.5, 0.5]], [[1.0], [1.0]], {}, r"^row 1: y_true has 2 options but y_pred has 1$"),
    ("negative", total_variation, [[0.5, 0.5]], [[1.5, -0.5]], {}, r"^y_pred row 0: entry 1 is negative \(-0.5\)$"),
    ("nan", total_variation, [[0.5, 0.5]] * 2, [[0.5, 0.5], [np.nan, 1.0]], {}, r"^y_pred row 1: entry 0 is nan \(NaN and infinity"),
    ("inf", total_variation, [[np.inf, 0.0]], [[0.5, 0.5]], {}, r"^y_true row 0: entry 0 is inf \(NaN and infinity"),
    ("sum", total_variation, [[0.5, 0.5]], [[0.5, 0.4]], {}, r"^y_pred row 0: sums to 0.9, not 1 \(atol=1e-06\); pass normalize=True"),
    ("sum, several rows", total_variation, [[1.0]] * 4, [[1.0], [0.9], [0.8], [0.7]], {}, r"^y_pred row 1: sums to 0.9, .* \(2 more rows with the same problem\)$"),
    ("zero sum normalised", total_variation, [[0.5, 0.5]], [[0.0, 0.0]], {"normalize": True}, r"^y_pred row 0: sums to 0, so it cannot be normalised$"),
    ("empty row", total_variation, [[1.0], []], [[1.0], []], {}, r"^y_true row 1: has no options$"),
    ("flat row", total_variation, [0.5, 0.5], [[0.5, 0.5]], {}, r"^y_true row 0: expected a sequence of probabilities, got float 0.5 \(pass one sequence per row"),
    ("strings", total_variation, [[0.5, 0.5]], [["a", "b"]], {}, r"^y_pred row 0: expected a flat sequence of numbers, got \['a', 'b'\]$"),
    ("nested", total_variation, [[0.5, 0.5], [0.5, [0.5]]], [[0.5, 0.5]] * 2, {}, r"^y_true row 1: expected a flat sequence of numbers"),
    ("dict row", total_variation, [[1.0]], [{"Yes": 1.0}], {}, r"^y_pred row 0: expected a sequence of numbers, got dict$"),
    ("string row", total_variation, [[1.0]], ["1"], {}, r"^y_pred row 0: expected a sequence of numbers, got str$"),
    ("scalar batch", total_variation, 0.5, [[1.0]], {}, r"^y_true: expected a sequence of rows \(one sequence of probabilities per row\), got float$"),
    ("1-d array", total_variation, np.array([0.5, 0.5]), [[0.5, 0.5]], {}, r"^y_true: expected a 2-D numeric array or a sequence of rows, got an array of shape \(2,\)"),
    ("negative atol", total_variation, [[1.0]], [[1.0]], {"atol": -1}, r"^atol must be a non-negative number, got -1$"),
    ("negative smoothing", kl_divergence, [[1.0]], [[1.0]], {"smoothing": -0.1}, r"^smoothing must be a non-negative number, got -0.1$"),
    ("kl base 1", kl_divergence, [[1.0]], [[1.0]], {"smoothing": 0.0, "base": 1}, r"^base must be a positive number other than 1, got 1$"),
    ("ordinal length", wasserstein_ordinal, [[1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]], {"ordinal_values": [[1, 2]]}, r"^row 0: y_true has 3 options but ordinal_values has 2$"),
    ("ordinal all equal", wasserstein_ordinal, [[1.0, 0.0]], [[0.0, 1.0]], {"ordinal_values": [[2, 2]]}, r"^row 0: ordinal_values are all equal"),
    ("ordinal nan", wasserstein_ordinal, [[1.0, 0.0]], [[0.0, 1.0]], {"ordinal_values": [[0, np.nan]]}, r"^ordinal_values row 0: has a NaN or infinite entry$"),
    ("js checks too", jensen_shannon_distance, [[0.5, 0.5]], [[0.7, 0.7]], {}, r"^y_pred row 0: sums to 1.4, not 1"),
]


@pytest.mark.parametrize(("function", "y_true", "y_pred", "options", "message"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_input_raises_a_value_error_naming_row_and_problem(function, y_true, y_pred, options, message):
    with pytest.raises(ValueError, match=message):
        function(y_true, y_pred, **options)


def test_check_distributions_returns_padded_pairs():
    true, pred = check_distributions([[0.5, 0.5], [1.0]], [[1.0, 0.0], [1.0]])
    assert true.lengths.tolist() == pred.lengths.tolist() == [2, 1]


def test_as_padded_names_the_argument():
    with pytest.raises(ValueError, match=r"^references row 0: entry 0 is negative"):
        as_padded([[-1.0, 2.0]], name="references")
