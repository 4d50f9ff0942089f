"""distalign: how far a model's answer distributions are from a group's (total variation).

A thin ``evaluate`` wrapper: all the mathematics lives in ``distalign_data``
(``distributions``, ``statistics``, ``temperature``), which works without
``evaluate``.
"""

import datasets
import evaluate
import numpy as np

from distalign_data.distributions import jensen_shannon_distance
from distalign_data.distributions import kl_divergence
from distalign_data.distributions import total_variation
from distalign_data.distributions import wasserstein_ordinal
from distalign_data.statistics import bootstrap_mean_ci
from distalign_data.statistics import ks_gap
from distalign_data.temperature import apply_temperature
from distalign_data.temperature import fit_temperature
from distalign_data.temperature import fit_temperature_kfold

_DESCRIPTION = """\
Distributional alignment as in Meister, Guestrin & Hashimoto (NAACL 2025): for each
(question, group) row, the total variation distance between the model's distribution
over the answer options and the group's reference distribution,
TV = 1/2 * sum_i |prediction_i - reference_i|, averaged over rows (the paper's
alignment score A). Lower is better; the range is [0, 1]. Rows may have different
numbers of options. The mean comes with a seeded percentile bootstrap interval.
Options add the knowledge-to-simulation gap (sequence vs verbalized predictions),
temperature scaling of the predictions, and Jensen-Shannon, ordinal Wasserstein and
KL distances.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): the model's distribution for each row,
        aligned option by option with the reference (rows may differ in length).
        With `verbalized_predictions`, these are the sequence method's distributions.
    references (`list` of `list` of `float`): the group's reference distribution for
        each row; each sums to 1.
    normalize (`bool`, defaults to `False`): rescale every row to sum to 1 instead of
        rejecting rows that do not (within 1e-6).
    check_sum (`bool`, defaults to `True`): set `False` to score rows exactly as given
        (the paper's protocol scored unnormalised outputs).
    n_resamples (`int`, defaults to 1000), confidence (`float`, defaults to 0.95),
        seed (`int`, defaults to 0): the percentile bootstrap of the mean.
    verbalized_predictions (`list` of `list` of `float`, optional): the same rows
        predicted by the verbalize method; adds the knowledge-to-simulation gap
        `ks_gap` = A(sequence) / A(verbalize) - 1, paired over rows.
    temperature (`float`, `"oracle"` or `"kfold"`, optional): temperature-scale the
        predictions first (p^(1/tau), renormalised): a given tau, the paper's oracle
        fit on these references, or a held-out 5-fold fit. Prediction rows that are all
        zero or NaN cannot be scaled: they are left out and counted.
    distances (`list` of `str`, optional): any of `"js"`, `"wasserstein"`, `"kl"`.
    ordinal_values (`list` of `list` of `float`, optional): option positions for
        `"wasserstein"` (default 0, 1, ..., k-1 in the given option order).
    kl_smoothing (`float`, defaults to 1e-6): additive smoothing of the predictions for `"kl"`.
Returns:
    tv (`float`): mean total variation over rows; lower is better, range [0, 1].
    tv_ci_low, tv_ci_high (`float`): the percentile bootstrap interval of `tv`.
    tv_per_row (`list` of `float`): the per-row total variations.
    n (`int`, rows scored), seed (`int`), n_resamples (`int`), confidence (`float`).
    With options: `ks_gap`, `ks_gap_ci_low`, `ks_gap_ci_high`, `tv_verbalized`
    (higher gap = sequence worse than verbalize); `temperature` (the tau, or the
    per-fold taus), `temperature_excluded_rows`; `js_distance` (base-2 logs, [0, 1]),
    `wasserstein` ([0, 1], normalised by the largest ordinal distance) and
    `kl_divergence` (nats, [0, inf)), each a mean over rows, lower is better,
    with `*_per_row` lists.
Examples:

    >>> import evaluate
    >>> distalign = evaluate.load("metrics/distalign")
    >>> result = distalign.compute(predictions=[[0.5, 0.5], [0.1, 0.2, 0.7]],
    ...                            references=[[1.0, 0.0], [0.1, 0.2, 0.7]])
    >>> result["tv"], result["tv_per_row"], result["n"]
    (0.25, [0.5, 0.0], 2)

    >>> result = distalign.compute(predictions=[[0.9, 0.1], [0.6, 0.4]],
    ...                            references=[[0.7, 0.3], [0.4, 0.6]],
    ...                            verbalized_predictions=[[0.8, 0.2], [0.5, 0.5]])
    >>> round(result["tv"], 6), round(result["tv_verbalized"], 6), round(result["ks_gap"], 6)
    (0.2, 0.1, 1.0)
"""

_CITATION = """\
@inproceedings{meister2025benchmarking,
  title     = {Benchmarking Distributional Alignment of Large Language Models},
  author    = {Meister, Nicole and Guestrin, Carlos and Hashimoto, Tatsunori},
  booktitle = {Proceedings of the 2025 Conference of the Nations of the Americas Chapter of the
               Association for Computational Linguistics (NAACL)},
  year      = {2025},
  url       = {https://arxiv.org/abs/2411.05403}
}
"""

_DISTANCES = {
    "js": "js_distance",
    "wasserstein": "wasserstein",
    "kl": "kl_divergence",
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Distalign(evaluate.Metric):
    """Total variation between predicted and reference answer distributions, with a bootstrap interval."""

    def _info(self):
        # float64: float32 storage would add about 1e-8 of noise to every probability.
        row = datasets.List(datasets.Value("float64"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": row, "references": row}),
            reference_urls=[
                "https://arxiv.org/abs/2411.05403",
                "https://github.com/nicolemeister/benchmarking-distributional-alignment",
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        normalize=False,
        check_sum=True,
        n_resamples=1000,
        confidence=0.95,
        seed=0,
        verbalized_predictions=None,
        temperature=None,
        distances=None,
        ordinal_values=None,
        kl_smoothing=1e-6,
    ):
        result = {}
        if temperature is not None:
            predictions, keep, result = _temperature_scaled(predictions, references, temperature, seed)
            references = [references[i] for i in keep]
            if verbalized_predictions is not None:
                verbalized_predictions = [verbalized_predictions[i] for i in keep]
            if ordinal_values is not None:
                ordinal_values = [ordinal_values[i] for i in keep]
        checks = {"normalize": normalize, "check_sum": check_sum}
        per_row = total_variation(references, predictions, **checks)
        interval = bootstrap_mean_ci(per_row, n_resamples=n_resamples, confidence=confidence, seed=seed)
        result = {
            "tv": interval.mean,
            "tv_ci_low": interval.ci_low,
            "tv_ci_high": interval.ci_high,
            "tv_per_row": per_row.tolist(),
            "n": interval.n,
            "seed": interval.seed,
            "n_resamples": interval.n_resamples,
            "confidence": interval.confidence,
            **result,
        }
        if verbalized_predictions is not None:
            verbalized = total_variation(references, verbalized_predictions, **checks)
            gap = ks_gap(per_row, verbalized, n_resamples=n_resamples, confidence=confidence, seed=seed)
            result.update(
                tv_verbalized=gap.a_verbalize,
                tv_verbalized_per_row=verbalized.tolist(),
                ks_gap=gap.mean,
                ks_gap_ci_low=gap.ci_low,
                ks_gap_ci_high=gap.ci_high,
            )
        for name in distances or ():
            if name not in _DISTANCES:
                raise ValueError(f"distances: unknown distance {name!r}; choose from {sorted(_DISTANCES)}")
            key = _DISTANCES[name]
            if name == "js":
                values = jensen_shannon_distance(references, predictions, normalize=normalize)
            elif name == "wasserstein":
                values = wasserstein_ordinal(references, predictions, ordinal_values=ordinal_values, normalize=normalize)
            else:
                values = kl_divergence(references, predictions, smoothing=kl_smoothing, normalize=normalize)
            result[key] = float(values.mean())
            result[f"{key}_per_row"] = values.tolist()
        return result


def _temperature_scaled(predictions, references, temperature, seed):
    """Scaled predictions of the rows that could be scaled, their indices, and what the scaling recorded."""
    if temperature == "oracle":
        fit = fit_temperature(references, predictions)
        excluded, recorded = fit.excluded_rows, fit.tau
    elif temperature == "kfold":
        fit = fit_temperature_kfold(references, predictions, seed=seed)
        excluded, recorded = fit.excluded_rows, list(fit.taus)
    elif isinstance(temperature, int | float) and not isinstance(temperature, bool):
        excluded, recorded = (), float(temperature)
    else:
        raise ValueError(f"temperature must be a number, 'oracle' or 'kfold', got {temperature!r}")
    keep = [int(i) for i in np.setdiff1d(np.arange(len(predictions)), excluded)]
    if temperature == "kfold":
        scaled = [fit.scaled[i] for i in keep]
    else:
        scaled = apply_temperature([predictions[i] for i in keep], recorded)
    return scaled, keep, {"temperature": recorded, "temperature_excluded_rows": list(excluded)}
