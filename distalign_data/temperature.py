"""Temperature scaling of predicted distributions (the paper's Eq. 3) and calibration error.

``apply_temperature(p, τ)`` maps each row to p^{1/τ} / Σ p^{1/τ}: τ > 1 flattens
a distribution, τ < 1 sharpens it, options with probability 0 stay at 0.

Two ways to choose τ for a set of rows:

* :func:`fit_temperature`, the paper's *oracle* fit: one τ minimising the summed
  total variation against the rows' own references, searched with scipy's
  ``minimize_scalar(method="bounded")`` on the paper's interval (0, 10). It
  uses the test labels, so it is an upper bound on what calibration can do.
* :func:`fit_temperature_kfold`, a held-out fit: rows are split into seeded
  folds and each row is scaled with the τ fitted on the other folds.

Rows of the prediction that are all zero or hold NaN (a failed log-prob parse)
cannot be scaled: both fits exclude them and count them. The paper's code did
not, and the objective became NaN at every τ; the bounded search then returns
its first golden-section point, a + 0.381966·(b − a) = 3.8197 on (0, 10), which
is the τ the paper used for GPT-3.5 OpinionQA persona (a clean fit gives about
2.31) and for Llama GlobalOpinionQA persona and few-shot:

>>> from scipy.optimize import minimize_scalar
>>> round(float(minimize_scalar(lambda tau: float("nan"), bounds=(0, 10), method="bounded").x), 4)
3.8197
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distalign_data.distributions import DEFAULT_ATOL, PaddedRows, as_padded, check_distributions, check_same_shape, pad_rows

PAPER_BOUNDS = (0.0, 10.0)
DEFAULT_XATOL = 1e-5  # scipy's default, which the paper kept
# Held-out fits from run records: folds over questions, so no row is scaled with a τ fitted on its own question.
HELDOUT_FOLDS = 5
# How far from 1 a reference may sum when τ is fitted from run records. The paper's stored
# GlobalOpinionQA references are rounded to 3 decimals and sum to 0.998-1.002, so the ``paper``
# protocol needs at least 0.002; 0.01 admits them and still leaves out a stored reference that is
# not a distribution at all (the OpinionQA no-steering letter bug). The ``corrected`` references
# are the rows' own, checked to 1e-6 when the rows were built, so the looser check hides nothing there.
REFERENCE_ATOL = 0.01


@dataclass(frozen=True)
class TemperatureFit:
    """One temperature fitted on a set of rows (lower ``objective`` is better)."""

    tau: float
    bounds: tuple[float, float]
    xatol: float
    objective: float
    n_rows: int
    n_excluded: int
    excluded_rows: tuple[int, ...]
    at_bound: bool


@dataclass(frozen=True)
class HeldOutTemperatureFit:
    """Temperatures fitted fold by fold; each row is scaled with another folds' τ."""

    taus: tuple[float, ...]
    fold_of_row: np.ndarray
    tau_of_row: np.ndarray
    scaled: list
    n_folds: int
    seed: int
    bounds: tuple[float, float]
    n_excluded: int
    excluded_rows: tuple[int, ...]


@dataclass(frozen=True)
class CellTemperature:
    """The τ fits of one (model, dataset, steering) cell of log-prob records, and the pairs behind them.

    ``records[i]`` gave the pair (``references[i]``, ``predictions[i]``), both on
    the option order the protocol scores in, and asked ``questions[i]``.
    ``usable`` lists the rows the fits used (the others hold a failed parse);
    ``oracle`` is None when no row is usable, ``heldout`` when fewer than
    ``n_folds`` questions have a usable row.
    """

    records: tuple
    references: list
    predictions: list
    questions: list
    usable: tuple[int, ...]
    oracle: TemperatureFit | None
    heldout: HeldOutTemperatureFit | None


@dataclass(frozen=True)
class CalibrationResult:
    """Expected calibration error and the per-bin data behind a reliability curve."""

    ece: float
    bin_edges: np.ndarray
    bin_counts: np.ndarray
    mean_predicted: np.ndarray
    mean_reference: np.ndarray
    n_points: int


def _scale(values: np.ndarray, tau: float) -> np.ndarray:
    """Temperature-scale padded rows that each have positive mass (padding stays 0)."""
    positive = values > 0
    with np.errstate(divide="ignore"):
        logits = np.where(positive, np.log(np.where(positive, values, 1.0)) / tau, -np.inf)
    # Shift by the row maximum so tiny τ (huge exponents) cannot overflow.
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def _check_tau(tau) -> float:
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    return float(tau)


def apply_temperature(probs, tau: float):
    """Scale each row p to p^{1/τ} / Σ p^{1/τ} (the paper's Eq. 3).

    ``probs`` is a ragged batch of non-negative rows (they need not sum to 1:
    log-prob mass outside the option letters is renormalised away). Returns a
    list of 1-D arrays, or a 2-D array when given one. A row summing to 0
    raises ``ValueError``.

    >>> apply_temperature([[0.2, 0.8], [0.5, 0.5, 0.0]], 1.0)
    [array([0.2, 0.8]), array([0.5, 0.5, 0. ])]
    >>> [row.round(4) for row in apply_temperature([[0.2, 0.8]], 2.0)]
    [array([0.3333, 0.6667])]
    """
    tau = _check_tau(tau)
    padded = as_padded(probs, name="probs", check_sum=False)
    zero = np.flatnonzero(padded.values.sum(axis=1) == 0)
    if len(zero):
        raise ValueError(f"probs row {zero[0]}: sums to 0, so it cannot be temperature-scaled")
    scaled = _scale(padded.values, tau)
    if isinstance(probs, np.ndarray) and probs.dtype != object:
        return scaled
    return PaddedRows(values=scaled, lengths=padded.lengths).to_list()


def _scalable(values: np.ndarray) -> np.ndarray:
    """Which padded prediction rows can be temperature-scaled: finite, with positive mass."""
    finite = np.isfinite(values).all(axis=1)
    return finite & (np.where(finite[:, None], values, 0.0).sum(axis=1) > 0)


def _usable_pairs(y_true, y_pred, atol: float) -> tuple[PaddedRows, PaddedRows, np.ndarray]:
    """Validated references, predictions with NaN zeroed, and which predictions can be scaled."""
    true = as_padded(y_true, name="y_true", atol=atol)
    pred = pad_rows(y_pred, name="y_pred")
    check_same_shape(true, pred)
    finite = np.isfinite(pred.values).all(axis=1)
    clean = np.where(finite[:, None], pred.values, 0.0)
    negative = np.flatnonzero((clean < 0).any(axis=1))
    if len(negative):
        raise ValueError(f"y_pred row {negative[0]}: has a negative entry ({clean[negative[0]].min()})")
    usable = _scalable(pred.values)
    if not usable.any():
        raise ValueError("y_pred: every row is all zero or holds NaN; no temperature can be fitted")
    return true, PaddedRows(values=clean, lengths=pred.lengths), usable


def _check_bounds(bounds) -> tuple[float, float]:
    low, high = (float(b) for b in bounds)
    if not (0 <= low < high < np.inf):
        raise ValueError(f"bounds must satisfy 0 <= low < high < inf, got {bounds!r}")
    return low, high


def _fit(true_values: np.ndarray, pred_values: np.ndarray, bounds, xatol: float) -> tuple[float, float]:
    """The bounded search of the paper: τ minimising Σ TV(scaled prediction, reference)."""
    from scipy.optimize import minimize_scalar

    def summed_tv(tau: float) -> float:
        return 0.5 * float(np.abs(_scale(pred_values, tau) - true_values).sum())

    result = minimize_scalar(summed_tv, bounds=bounds, method="bounded", options={"xatol": xatol})
    return float(result.x), float(result.fun) / len(true_values)


def fit_temperature(
    y_true,
    y_pred,
    *,
    bounds: tuple[float, float] = PAPER_BOUNDS,
    xatol: float = DEFAULT_XATOL,
    atol: float = DEFAULT_ATOL,
) -> TemperatureFit:
    """The paper's oracle fit: one τ for all rows, against their own references.

    Minimises Σ TV(apply_temperature(y_pred, τ), y_true) over τ in ``bounds``
    (scipy's bounded Brent search, tolerance ``xatol``; both are recorded).
    Rows of ``y_pred`` that are all zero or hold NaN are excluded and counted
    (``n_excluded``, ``excluded_rows``). ``objective`` is the mean TV of the
    used rows at the fitted τ (lower is better). ``at_bound`` flags a τ within
    ``10·xatol`` of a bound (the paper's NYT fits all end at τ ≈ 10).

    >>> fit = fit_temperature([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], [[0.1, 0.9], [0.0, 0.0], [0.9, 0.1]])
    >>> fit.at_bound, fit.n_rows, fit.excluded_rows
    (True, 2, (1,))
    """
    low, high = _check_bounds(bounds)
    true, pred, usable = _usable_pairs(y_true, y_pred, atol)
    tau, objective = _fit(true.values[usable], pred.values[usable], (low, high), xatol)
    excluded = tuple(int(i) for i in np.flatnonzero(~usable))
    return TemperatureFit(
        tau=tau,
        bounds=(low, high),
        xatol=xatol,
        objective=objective,
        n_rows=int(usable.sum()),
        n_excluded=len(excluded),
        excluded_rows=excluded,
        at_bound=bool(min(tau - low, high - tau) <= 10 * xatol),
    )


def fit_temperature_kfold(
    y_true,
    y_pred,
    *,
    n_folds: int = 5,
    seed: int = 0,
    groups=None,
    bounds: tuple[float, float] = PAPER_BOUNDS,
    xatol: float = DEFAULT_XATOL,
    atol: float = DEFAULT_ATOL,
) -> HeldOutTemperatureFit:
    """Held-out temperature scaling: each row scaled with the τ fitted on the other folds.

    Usable rows (see :func:`fit_temperature`) are shuffled with ``seed`` into
    ``n_folds`` folds; pass ``groups`` (one label per row, e.g. the question
    id) to keep all rows of a group in one fold, so no row is scaled with a τ
    fitted on its own question. ``scaled[i]`` is row ``i`` scaled with
    ``tau_of_row[i]`` (None, and NaN, for excluded rows).

    >>> refs = [[0.5, 0.5]] * 4
    >>> fit = fit_temperature_kfold(refs, [[0.1, 0.9], [0.2, 0.8], [0.8, 0.2], [0.0, 0.0]], n_folds=3, seed=0)
    >>> len(fit.taus), fit.excluded_rows, fit.scaled[3] is None
    (3, (3,), True)
    """
    if not (isinstance(n_folds, int | np.integer) and n_folds >= 2):
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer (it is recorded with the result), got {seed!r}")
    low, high = _check_bounds(bounds)
    true, pred, usable = _usable_pairs(y_true, y_pred, atol)
    n_rows = len(true)
    if groups is None:
        labels = np.arange(n_rows)
    else:
        labels = np.asarray(groups)
        if labels.shape != (n_rows,):
            raise ValueError(f"groups has shape {labels.shape} but there are {n_rows} rows")
    used_labels, label_index = np.unique(labels[usable], return_inverse=True)
    if len(used_labels) < n_folds:
        raise ValueError(f"n_folds={n_folds} needs at least as many usable rows (or groups); got {len(used_labels)}")
    rng = np.random.default_rng(seed)
    fold_of_label = np.empty(len(used_labels), dtype=np.intp)
    fold_of_label[rng.permutation(len(used_labels))] = np.arange(len(used_labels)) % n_folds
    fold_of_row = np.full(n_rows, -1, dtype=np.intp)
    fold_of_row[usable] = fold_of_label[label_index]

    taus = []
    tau_of_row = np.full(n_rows, np.nan)
    scaled_values = np.full(true.values.shape, np.nan)
    for fold in range(n_folds):
        train = usable & (fold_of_row != fold)
        test = fold_of_row == fold
        tau, _ = _fit(true.values[train], pred.values[train], (low, high), xatol)
        taus.append(tau)
        tau_of_row[test] = tau
        scaled_values[test] = _scale(pred.values[test], tau)
    rows = PaddedRows(values=np.nan_to_num(scaled_values), lengths=pred.lengths).to_list()
    excluded = tuple(int(i) for i in np.flatnonzero(~usable))
    return HeldOutTemperatureFit(
        taus=tuple(taus),
        fold_of_row=fold_of_row,
        tau_of_row=tau_of_row,
        scaled=[row if ok else None for row, ok in zip(rows, usable)],
        n_folds=int(n_folds),
        seed=int(seed),
        bounds=(low, high),
        n_excluded=len(excluded),
        excluded_rows=excluded,
    )


def expected_calibration_error(y_true, y_pred, *, n_bins: int = 10, normalize: bool = False, atol: float = DEFAULT_ATOL) -> CalibrationResult:
    """Expected calibration error of predicted option probabilities against reference probabilities.

    Every (row, option) pair is one point: its predicted probability
    ``y_pred[i][j]`` and the reference probability ``y_true[i][j]`` (the share
    of the group choosing that option). Points are binned by predicted
    probability into ``n_bins`` equal-width bins on [0, 1] (the last bin
    includes 1), and ECE = Σ_b (n_b / N) · |mean predicted_b − mean reference_b|.
    Lower is better; the range is [0, 1]. ``mean_predicted``/``mean_reference``
    per bin (NaN where a bin is empty) give the reliability curve.

    >>> result = expected_calibration_error([[0.5, 0.5]], [[0.3, 0.7]], n_bins=2)
    >>> round(result.ece, 6), result.bin_counts.tolist()
    (0.2, [1, 1])
    """
    if not (isinstance(n_bins, int | np.integer) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    true, pred = check_distributions(y_true, y_pred, normalize=normalize, atol=atol)
    mask = true.mask
    predicted = pred.values[mask]
    reference = true.values[mask]
    bins = np.minimum((predicted * n_bins).astype(np.intp), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(bins, weights=predicted, minlength=n_bins) / counts
        mean_reference = np.bincount(bins, weights=reference, minlength=n_bins) / counts
    filled = counts > 0
    ece = float((counts[filled] * np.abs(mean_predicted[filled] - mean_reference[filled])).sum() / counts.sum())
    return CalibrationResult(
        ece=ece,
        bin_edges=np.linspace(0.0, 1.0, n_bins + 1),
        bin_counts=counts,
        mean_predicted=mean_predicted,
        mean_reference=mean_reference,
        n_points=int(counts.sum()),
    )


def fit_cell_temperatures(records, rows, *, protocol: str, n_folds: int = HELDOUT_FOLDS,
                          seed: int = 0) -> dict[tuple[str, str, str], CellTemperature]:
    """The oracle and held-out τ of every (model, dataset, steering) cell of ``records``' log-prob records.

    As the paper did, one τ per cell, pooled over the cell's groups. Each
    record's (reference, prediction) pair is the one the score table uses
    (:func:`distalign_data.scoring.scored_pair`). Under ``corrected`` a failed
    parse is an all-NaN prediction, which the fits exclude and count; under
    ``paper`` a pair the protocol drops, or whose stored reference is not a
    distribution (off 1 by more than :data:`REFERENCE_ATOL`), is left out. A
    record whose row is not in ``rows`` (an iterable of benchmark rows or a
    mapping dataset -> rows) is left out. The held-out fit uses ``n_folds``
    folds over questions, shuffled with ``seed``.

    >>> from distalign_data.records import RunRecord
    >>> row = {"dataset": "nyt_books", "id": "q1/Male", "question_id": "q1", "options": ["No", "Yes"],
    ...        "distribution": [0.5, 0.5]}
    >>> record = RunRecord(model="m", dataset="nyt_books", row_id="q1/Male", question_id="q1",
    ...                    group_attribute="SEX", group="Male", method="logprobs", steering="persona",
    ...                    options=["Yes", "No"], distribution=[0.8, 0.2], parse_status="ok")
    >>> cell = fit_cell_temperatures([record], [row], protocol="corrected")[("m", "nyt_books", "persona")]
    >>> cell.predictions[0].tolist(), cell.oracle.at_bound, cell.heldout is None
    ([0.2, 0.8], True, True)
    """
    from distalign_data.scoring import rows_by_id, scored_pair

    index = rows_by_id(rows)
    pooled: dict[tuple[str, str, str], list] = {}
    for record in records:
        row = index.get((record.dataset, record.row_id))
        if record.method != "logprobs" or row is None:
            continue
        pair = scored_pair(record, row, protocol)
        if pair is None and protocol == "corrected":
            pair = (row["distribution"], np.full(len(row["options"]), np.nan))
        if pair is None:
            continue
        reference, prediction = np.asarray(pair[0], dtype=float), np.asarray(pair[1], dtype=float)
        if abs(reference.sum() - 1) > REFERENCE_ATOL:
            if protocol == "corrected":
                raise ValueError(f"row {record.row_id!r} ({record.dataset}): reference sums to {float(reference.sum()):.6g}, "
                                 f"not 1 (tolerance {REFERENCE_ATOL})")
            continue
        pooled.setdefault((record.model, record.dataset, record.steering), []).append(
            (record, reference, prediction, record.question_id))
    cells = {}
    for cell, items in pooled.items():
        cell_records, references, predictions, questions = (list(column) for column in zip(*items))
        usable = tuple(int(i) for i in np.flatnonzero(_scalable(pad_rows(predictions, name="y_pred").values)))
        oracle = heldout = None
        if usable:
            oracle = fit_temperature(references, predictions, atol=REFERENCE_ATOL)
        if len({questions[i] for i in usable}) >= n_folds:
            heldout = fit_temperature_kfold(references, predictions, n_folds=n_folds, seed=seed, groups=questions,
                                            atol=REFERENCE_ATOL)
        cells[cell] = CellTemperature(tuple(cell_records), references, predictions, questions, usable, oracle, heldout)
    return cells
