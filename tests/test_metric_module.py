"""The evaluate module metrics/distalign gives the core API's numbers."""

from __future__ import annotations

import doctest
import textwrap
from pathlib import Path

import numpy as np
import pytest

from distalign_data.distributions import jensen_shannon_distance, kl_divergence, total_variation, wasserstein_ordinal
from distalign_data.statistics import bootstrap_mean_ci, ks_gap
from distalign_data.temperature import apply_temperature, fit_temperature, fit_temperature_kfold

REPO = Path(__file__).resolve().parents[1]
METRIC_DIR = REPO / "metrics" / "distalign"


@pytest.fixture(scope="module")
def evaluate():
    import evaluate  # about 3.5 s: once per module

    return evaluate


@pytest.fixture(scope="module")
def metric(evaluate):
    return evaluate.load(str(METRIC_DIR))


def ragged_rows(n_rows: int, seed: int):
    rng = np.random.default_rng(seed)
    refs, preds, other = [], [], []
    for k in rng.integers(2, 13, size=n_rows):
        refs.append(rng.dirichlet(np.ones(k)).tolist())
        preds.append(rng.dirichlet(np.ones(k)).tolist())
        other.append(rng.dirichlet(np.ones(k)).tolist())
    return refs, preds, other


def test_metric_matches_the_core_api(metric):
    refs, preds, _ = ragged_rows(200, seed=0)
    result = metric.compute(predictions=preds, references=refs, seed=4, n_resamples=500)
    per_row = total_variation(refs, preds)
    interval = bootstrap_mean_ci(per_row, seed=4, n_resamples=500)
    np.testing.assert_allclose(result["tv_per_row"], per_row, rtol=1e-7, atol=1e-12)
    assert result["tv"] == pytest.approx(interval.mean, rel=1e-7)
    assert (result["tv_ci_low"], result["tv_ci_high"]) == pytest.approx((interval.ci_low, interval.ci_high), rel=1e-7)
    assert (result["n"], result["seed"], result["n_resamples"], result["confidence"]) == (200, 4, 500, 0.95)


def test_metric_hand_example(metric):
    result = metric.compute(predictions=[[0.5, 0.5], [0.1, 0.2, 0.7]], references=[[1.0, 0.0], [0.1, 0.2, 0.7]])
    assert result["tv"] == pytest.approx(0.25) and result["tv_per_row"] == pytest.approx([0.5, 0.0])


def test_metric_ks_gap_matches_core(metric):
    refs, seq, verb = ragged_rows(120, seed=1)
    result = metric.compute(predictions=seq, references=refs, verbalized_predictions=verb, seed=2)
    gap = ks_gap(total_variation(refs, seq), total_variation(refs, verb), seed=2)
    assert result["ks_gap"] == pytest.approx(gap.mean, rel=1e-7)
    assert (result["ks_gap_ci_low"], result["ks_gap_ci_high"]) == pytest.approx((gap.ci_low, gap.ci_high), rel=1e-7)
    assert result["tv_verbalized"] == pytest.approx(gap.a_verbalize, rel=1e-7)


def test_metric_extra_distances_match_core(metric):
    refs, preds, _ = ragged_rows(80, seed=2)
    result = metric.compute(predictions=preds, references=refs, distances=["js", "wasserstein", "kl"], kl_smoothing=1e-4)
    np.testing.assert_allclose(result["js_distance_per_row"], jensen_shannon_distance(refs, preds), rtol=1e-7)
    np.testing.assert_allclose(result["wasserstein_per_row"], wasserstein_ordinal(refs, preds), rtol=1e-7)
    np.testing.assert_allclose(result["kl_divergence_per_row"], kl_divergence(refs, preds, smoothing=1e-4), rtol=1e-7)
    assert result["js_distance"] == pytest.approx(np.mean(result["js_distance_per_row"]))


def test_metric_temperature_options_match_core(metric):
    refs, preds, _ = ragged_rows(30, seed=3)
    preds[4] = [0.0] * len(preds[4])
    kept = [i for i in range(30) if i != 4]
    oracle = metric.compute(predictions=preds, references=refs, temperature="oracle", check_sum=False)
    fit = fit_temperature(refs, preds)
    assert oracle["temperature"] == pytest.approx(fit.tau, rel=1e-9)
    assert oracle["temperature_excluded_rows"] == [4] and oracle["n"] == 29
    scaled = apply_temperature([preds[i] for i in kept], fit.tau)
    np.testing.assert_allclose(oracle["tv_per_row"], total_variation([refs[i] for i in kept], scaled), rtol=1e-7)

    kfold = metric.compute(predictions=preds, references=refs, temperature="kfold", seed=5)
    held_out = fit_temperature_kfold(refs, preds, seed=5)
    assert kfold["temperature"] == pytest.approx(list(held_out.taus), rel=1e-9)
    expected = total_variation([refs[i] for i in kept], [held_out.scaled[i] for i in kept])
    np.testing.assert_allclose(kfold["tv_per_row"], expected, rtol=1e-7)

    fixed = metric.compute(predictions=preds[:4], references=refs[:4], temperature=2.0)
    np.testing.assert_allclose(fixed["tv_per_row"], total_variation(refs[:4], apply_temperature(preds[:4], 2.0)), rtol=1e-7)


def test_metric_temperature_drops_the_same_rows_from_every_input(metric):
    refs, preds, verb = ragged_rows(12, seed=6)
    preds[2] = [float("nan")] * len(preds[2])
    result = metric.compute(predictions=preds, references=refs, verbalized_predictions=verb,
                            temperature="oracle", distances=["wasserstein"])
    kept = [i for i in range(12) if i != 2]
    assert result["temperature_excluded_rows"] == [2] and result["n"] == 11
    np.testing.assert_allclose(result["tv_verbalized_per_row"], total_variation([refs[i] for i in kept], [verb[i] for i in kept]), rtol=1e-7)
    assert len(result["wasserstein_per_row"]) == 11


def test_add_batch_then_compute(metric, evaluate):
    refs, preds, _ = ragged_rows(10, seed=4)
    fresh = evaluate.load(str(METRIC_DIR))
    fresh.add_batch(predictions=preds[:6], references=refs[:6])
    fresh.add_batch(predictions=preds[6:], references=refs[6:])
    assert fresh.compute()["tv_per_row"] == pytest.approx(metric.compute(predictions=preds, references=refs)["tv_per_row"])


def test_combine_with_another_module(evaluate, metric, tmp_path):
    # A second, independent metric on the same inputs: the largest absolute difference per row.
    folder = tmp_path / "max_gap"
    folder.mkdir()
    (folder / "max_gap.py").write_text(
        textwrap.dedent(
            '''
            import datasets
            import evaluate


            class MaxGap(evaluate.Metric):
                def _info(self):
                    row = datasets.List(datasets.Value("float64"))
                    return evaluate.MetricInfo(
                        description="largest absolute difference", citation="", inputs_description="",
                        features=datasets.Features({"predictions": row, "references": row}),
                    )

                def _compute(self, predictions, references, **unused):
                    gaps = [max(abs(p - r) for p, r in zip(ps, rs)) for ps, rs in zip(predictions, references)]
                    return {"max_gap": sum(gaps) / len(gaps)}
            '''
        )
    )
    combined = evaluate.combine([metric, evaluate.load(str(folder))])
    result = combined.compute(predictions=[[0.5, 0.5], [0.2, 0.8]], references=[[1.0, 0.0], [0.2, 0.8]])
    # TV: (0.5 + 0) / 2; largest gap: (0.5 + 0) / 2
    assert result["tv"] == pytest.approx(0.25) and result["max_gap"] == pytest.approx(0.25)
    assert "tv_ci_low" in result


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"predictions": [[0.5, 0.5]], "references": [[0.5, 0.3, 0.2]]}, r"^row 0: y_true has 3 options but y_pred has 2$"),
        ({"predictions": [[0.5, 0.6]], "references": [[0.5, 0.5]]}, r"^y_pred row 0: sums to 1.1"),
        ({"distances": ["hellinger"]}, r"^distances: unknown distance 'hellinger'"),
        ({"temperature": "platt"}, r"^temperature must be a number, 'oracle' or 'kfold', got 'platt'$"),
    ],
)
def test_metric_rejects_bad_input(metric, options, message):
    arguments = {"predictions": [[0.5, 0.5]], "references": [[0.5, 0.5]], **options}
    with pytest.raises(ValueError, match=message):
        metric.compute(**arguments)


def test_metric_doctests_run_from_the_repository_root(metric, monkeypatch):
    # pytest collects these too (--doctest-modules); this runs them wherever pytest starts.
    monkeypatch.chdir(REPO)
    module = __import__(type(metric).__module__, fromlist=["_KWARGS_DESCRIPTION"])
    tests = doctest.DocTestFinder().find(module._KWARGS_DESCRIPTION, "distalign._KWARGS_DESCRIPTION", globs={})
    examples = sum(len(test.examples) for test in tests)
    assert examples >= 6
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
