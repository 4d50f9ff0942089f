"""Distances between answer distributions, on ragged batches.

Every benchmark row is one (question, group) pair whose reference distribution
has its own number of options (2 to 12 or more). The functions here take a batch
of such rows as a sequence of sequences (or a 2-D array), pad it once into an
``(n_rows, max_options)`` array and compute every row at once: there is no
Python loop per row on these paths.

Arguments follow scikit-learn's order, ``(y_true, y_pred)``: the reference
(human) distributions first, the model's distributions second. Options are
keyword-only. Every distance here is *lower is better*.

Validation is strict by default: a row that is empty, has a negative, NaN or
infinite entry, does not match the other argument's length, or does not sum to 1
within ``atol`` raises a ``ValueError`` naming the argument, the row index and
the problem. ``normalize=True`` rescales rows to sum to 1 instead (a row summing
to 0 still fails), and ``check_sum=False`` scores rows exactly as given, which
is what the paper's protocol needs (it scored unnormalised parsed outputs,
including all-zero vectors).

>>> total_variation([[0.5, 0.5], [0.2, 0.3, 0.5]], [[1.0, 0.0], [0.2, 0.5, 0.3]])
array([0.5, 0.2])
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_ATOL = 1e-6


@dataclass(frozen=True)
class PaddedRows:
    """A ragged batch of distributions, zero-padded to a rectangle.

    ``values[i, :lengths[i]]`` is row ``i``; the padding is 0, which leaves
    sums, total variation, entropies and cumulative sums unchanged.
    """

    values: np.ndarray
    lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``(n_rows, max_options)`` array, True on real options."""
        return np.arange(self.values.shape[1]) < self.lengths[:, None]

    def __len__(self) -> int:
        return len(self.lengths)

    def to_list(self) -> list[np.ndarray]:
        """The rows as a list of 1-D arrays (one per row, unpadded)."""
        flat = self.values[self.mask]
        return np.split(flat, np.cumsum(self.lengths)[:-1])


# Iterable, but never a row of probabilities (a dict would iterate over its keys).
_NOT_ROWS = (str, bytes, Mapping)


def _describe_bad_row(rows, name: str) -> str:
    """Find the first row that cannot be read as numbers (error path only)."""
    for i, row in enumerate(rows):
        if isinstance(row, _NOT_ROWS):
            return f"{name} row {i}: expected a sequence of numbers, got {type(row).__name__}"
        try:
            np.asarray(row, dtype=np.float64).reshape(len(row))
        except (TypeError, ValueError):
            return f"{name} row {i}: expected a flat sequence of numbers, got {row!r:.80}"
    return f"{name}: could not be read as rows of numbers"


def _flatten(rows, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 values and per-row lengths of a ragged batch."""
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        if rows.ndim != 2 or rows.dtype.kind not in "biuf":
            raise ValueError(
                f"{name}: expected a 2-D numeric array or a sequence of rows, "
                f"got an array of shape {rows.shape} and dtype {rows.dtype}"
            )
        return rows.astype(np.float64).ravel(), np.full(rows.shape[0], rows.shape[1], dtype=np.intp)
    if isinstance(rows, _NOT_ROWS):
        raise ValueError(f"{name}: expected a sequence of rows, got {type(rows).__name__}")
    if not isinstance(rows, Sequence):
        try:
            rows = list(rows)
        except TypeError:
            raise ValueError(
                f"{name}: expected a sequence of rows (one sequence of probabilities per row), "
                f"got {type(rows).__name__}"
            ) from None
    if len(rows) == 0:
        raise ValueError(f"{name} is empty: at least one row is needed")
    row_types = set(map(type, rows))
    if any(issubclass(t, _NOT_ROWS) for t in row_types):
        raise ValueError(_describe_bad_row(rows, name))
    try:
        lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
    except TypeError:
        bad = next(i for i, row in enumerate(rows) if not hasattr(row, "__len__"))
        raise ValueError(
            f"{name} row {bad}: expected a sequence of probabilities, got {type(rows[bad]).__name__} "
            f"{rows[bad]!r:.40} (pass one sequence per row, e.g. [[0.5, 0.5]])"
        ) from None
    try:
        if row_types <= {np.ndarray}:
            flat = np.concatenate(rows).astype(np.float64, copy=False)
            if flat.ndim != 1:
                raise ValueError
        else:
            flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=int(lengths.sum()))
    except (TypeError, ValueError):
        raise ValueError(_describe_bad_row(rows, name)) from None
    return flat, lengths


def _first(indices: np.ndarray) -> tuple[int, str]:
    more = len(indices) - 1
    return int(indices[0]), (f" ({more} more row{'s' if more > 1 else ''} with the same problem)" if more else "")


def pad_rows(rows, *, name: str = "y") -> PaddedRows:
    """Read a ragged batch of numbers and pad it with zeros, checking only its shape.

    Raises ``ValueError`` for an empty batch, an empty row or a row that is not
    a flat sequence of numbers; values (NaN, negatives, sums) are not checked:
    :func:`as_padded` does that.

    >>> pad_rows([[0.0, float("nan")], [1.0]]).values
    array([[ 0., nan],
           [ 1.,  0.]])
    """
    flat, lengths = _flatten(rows, name)
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        row, more = _first(empty)
        raise ValueError(f"{name} row {row}: has no options{more}")
    offsets = np.cumsum(lengths) - lengths
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    column = np.arange(len(flat)) - offsets[row_of]
    values = np.zeros((len(lengths), int(lengths.max())))
    values[row_of, column] = flat
    return PaddedRows(values=values, lengths=lengths)


def as_padded(
    rows,
    *,
    name: str = "y",
    normalize: bool = False,
    check_sum: bool = True,
    atol: float = DEFAULT_ATOL,
) -> PaddedRows:
    """Validate a ragged batch of distributions and pad it with zeros.

    Raises ``ValueError`` naming ``name``, the row index and the problem for an
    empty batch, an empty row, a row that is not a flat sequence of numbers, a
    negative or non-finite entry, a row summing to 0 with ``normalize=True``,
    or (with ``check_sum=True`` and ``normalize=False``) a row whose sum differs
    from 1 by more than ``atol``.

    >>> padded = as_padded([[0.25, 0.75], [0.2, 0.3, 0.5]])
    >>> padded.values
    array([[0.25, 0.75, 0.  ],
           [0.2 , 0.3 , 0.5 ]])
    >>> padded.lengths
    array([2, 3])
    >>> as_padded([[0.5, 0.25]], name="y_pred")
    Traceback (most recent call last):
    ...
    ValueError: y_pred row 0: sums to 0.75, not 1 (atol=1e-06); pass normalize=True to rescale rows
    """
    if not atol >= 0:
        raise ValueError(f"atol must be a non-negative number, got {atol!r}")
    padded = pad_rows(rows, name=name)
    values, lengths = padded.values, padded.lengths
    # Padding is 0, so it never trips these checks.
    for bad, problem in ((~np.isfinite(values), "is {} (NaN and infinity are not probabilities)"), (values < 0, "is negative ({})")):
        bad_rows = np.flatnonzero(bad.any(axis=1))
        if len(bad_rows):
            row, more = _first(bad_rows)
            column = int(np.argmax(bad[row]))
            raise ValueError(f"{name} row {row}: entry {column} " + problem.format(values[row, column]) + more)

    sums = values.sum(axis=1)
    if normalize:
        zero = np.flatnonzero(sums <= 0)
        if len(zero):
            row, more = _first(zero)
            raise ValueError(f"{name} row {row}: sums to 0, so it cannot be normalised{more}")
        values = values / sums[:, None]
    elif check_sum:
        off = np.flatnonzero(np.abs(sums - 1.0) > atol)
        if len(off):
            row, more = _first(off)
            raise ValueError(
                f"{name} row {row}: sums to {sums[row]:.6g}, not 1 (atol={atol:g}); "
                f"pass normalize=True to rescale rows{more}"
            )
    return PaddedRows(values=values, lengths=lengths)


def check_distributions(
    y_true,
    y_pred,
    *,
    normalize: bool = False,
    check_sum: bool = True,
    atol: float = DEFAULT_ATOL,
) -> tuple[PaddedRows, PaddedRows]:
    """Validate a pair of ragged batches row against row; return both padded.

    Besides the per-batch checks of :func:`as_padded`, the two batches must
    have the same number of rows and each row the same number of options.

    >>> check_distributions([[0.5, 0.5]], [[0.2, 0.3, 0.5]])
    Traceback (most recent call last):
    ...
    ValueError: row 0: y_true has 2 options but y_pred has 3
    """
    true = as_padded(y_true, name="y_true", normalize=normalize, check_sum=check_sum, atol=atol)
    pred = as_padded(y_pred, name="y_pred", normalize=normalize, check_sum=check_sum, atol=atol)
    check_same_shape(true, pred)
    return true, pred


def check_same_shape(true: PaddedRows, pred: PaddedRows, *, names=("y_true", "y_pred")) -> None:
    """Raise ``ValueError`` unless both batches have the same rows and options per row."""
    if len(true) != len(pred):
        raise ValueError(f"{names[0]} has {len(true)} rows but {names[1]} has {len(pred)}")
    differ = np.flatnonzero(true.lengths != pred.lengths)
    if len(differ):
        row, more = _first(differ)
        raise ValueError(
            f"row {row}: {names[0]} has {true.lengths[row]} options but {names[1]} has {pred.lengths[row]}{more}"
        )


def total_variation(y_true, y_pred, *, normalize=False, check_sum=True, atol=DEFAULT_ATOL) -> np.ndarray:
    """Total variation distance per row: ½ Σ_i |y_true_i − y_pred_i| (the paper's Eq. 1 per row).

    Lower is better; the range is [0, 1] for distributions (0 iff identical,
    1 iff disjoint supports). With ``check_sum=False`` unnormalised rows are
    scored as given: an all-zero prediction scores ½ Σ y_true = 0.5, as in the
    paper's released evaluation.

    >>> total_variation([[0.5, 0.5], [1.0, 0.0, 0.0]], [[0.5, 0.5], [0.0, 0.5, 0.5]])
    array([0., 1.])
    >>> total_variation([[0.25, 0.75]], [[0.0, 0.0]], check_sum=False)
    array([0.5])
    """
    true, pred = check_distributions(y_true, y_pred, normalize=normalize, check_sum=check_sum, atol=atol)
    return 0.5 * np.abs(true.values - pred.values).sum(axis=1)


def mean_total_variation(y_true, y_pred, *, normalize=False, check_sum=True, atol=DEFAULT_ATOL) -> float:
    """Mean total variation over rows: the paper's alignment score A(Y, Ŷ).

    Lower is better; the range is [0, 1].

    >>> mean_total_variation([[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.2, 0.8]])
    0.25
    """
    return float(total_variation(y_true, y_pred, normalize=normalize, check_sum=check_sum, atol=atol).mean())


def _xlogy_ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Σ p log(p/q) per row, with 0 log 0 = 0 (natural log)."""
    positive = p > 0
    safe_q = np.where(positive, q, 1.0)
    safe_p = np.where(positive, p, 1.0)
    with np.errstate(divide="ignore"):
        terms = np.where(positive, p * (np.log(safe_p) - np.log(safe_q)), 0.0)
    return terms.sum(axis=1)


def jensen_shannon_distance(y_true, y_pred, *, normalize=False, atol=DEFAULT_ATOL) -> np.ndarray:
    """Jensen-Shannon distance per row, with base-2 logarithms.

    JS(p, q) = sqrt(½ KL(p‖m) + ½ KL(q‖m)), m = (p + q)/2, logs base 2, so the
    range is [0, 1]; lower is better (0 iff identical). It equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` for each row, the
    measure GlobalOpinionQA reports (as 1 − distance, its similarity).

    >>> jensen_shannon_distance([[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]])
    array([1., 0.])
    """
    true, pred = check_distributions(y_true, y_pred, normalize=normalize, atol=atol)
    p, q = true.values, pred.values
    # KL(p‖m) = Σ p log(p/(p+q)) + log 2 · Σ p: dividing by p + q rather than
    # m = (p + q)/2 keeps m from underflowing to 0 next to a subnormal p or q.
    total = p + q
    log_2 = np.log(2.0)
    divergence_nats = 0.5 * (_xlogy_ratio(p, total) + _xlogy_ratio(q, total) + log_2 * total.sum(axis=1))
    return np.sqrt(np.clip(divergence_nats / log_2, 0.0, None))


def wasserstein_ordinal(y_true, y_pred, *, ordinal_values=None, normalize=False, atol=DEFAULT_ATOL) -> np.ndarray:
    """Wasserstein-1 distance per row on an ordinal scale, normalised to [0, 1].

    OpinionQA's convention: the options of a row sit at ordinal positions
    (by default 0, 1, ..., k−1 in the given option order, or the per-row
    ``ordinal_values``), the earth mover's distance between the two
    distributions on that line is divided by the largest possible distance
    (max − min of the row's ordinal values). Lower is better; the range is
    [0, 1] (1 = all mass at opposite ends). OpinionQA's alignment is one minus
    this. Rows with a single option score 0.

    >>> wasserstein_ordinal([[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
    array([1.])
    >>> wasserstein_ordinal([[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    array([0.5])
    >>> wasserstein_ordinal([[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], ordinal_values=[[1, 4, 5]])
    array([0.75])
    """
    true, pred = check_distributions(y_true, y_pred, normalize=normalize, atol=atol)
    n_rows, width = true.values.shape
    mask = true.mask
    if ordinal_values is None:
        positions = np.broadcast_to(np.arange(width, dtype=np.float64), (n_rows, width))
    else:
        values = pad_rows(ordinal_values, name="ordinal_values")
        nonfinite = np.flatnonzero(~np.isfinite(values.values).all(axis=1))
        if len(nonfinite):
            raise ValueError(f"ordinal_values row {nonfinite[0]}: has a NaN or infinite entry")
        check_same_shape(true, values, names=("y_true", "ordinal_values"))
        positions = values.values
    # Sort each row by position; padding goes last and then takes the row's
    # maximum, so its gaps (and hence its contribution) are zero.
    keyed = np.where(mask, positions, np.inf)
    order = np.argsort(keyed, axis=1, kind="stable")
    keyed = np.take_along_axis(keyed, order, axis=1)
    row_max = keyed[np.arange(n_rows), true.lengths - 1]
    keyed = np.where(np.isinf(keyed), row_max[:, None], keyed)
    p = np.take_along_axis(true.values, order, axis=1)
    q = np.take_along_axis(pred.values, order, axis=1)
    gaps = np.diff(keyed, axis=1)
    cdf_gap = np.abs(np.cumsum(p - q, axis=1)[:, :-1])
    span = row_max - keyed[:, 0]
    degenerate = np.flatnonzero((span <= 0) & (true.lengths > 1))
    if len(degenerate):
        row, more = _first(degenerate)
        raise ValueError(f"row {row}: ordinal_values are all equal, so no distance can be normalised{more}")
    distance = (cdf_gap * gaps).sum(axis=1)
    return np.divide(distance, span, out=np.zeros(n_rows), where=span > 0)


def kl_divergence(y_true, y_pred, *, smoothing: float, base: float | None = None, normalize=False, atol=DEFAULT_ATOL) -> np.ndarray:
    """Kullback-Leibler divergence KL(y_true ‖ y_pred) per row, with additive smoothing.

    ``y_pred`` is smoothed before the divergence: (y_pred + smoothing) / (1 + k·smoothing)
    for a row of k options, so a prediction that puts 0 on an option people
    chose gives a finite (large) value. ``smoothing=0`` gives the unsmoothed
    divergence, which is ``inf`` in that case. Natural logarithm unless ``base``
    is given. Lower is better; the range is [0, inf).

    >>> kl_divergence([[0.5, 0.5]], [[0.5, 0.5]], smoothing=0.0)
    array([0.])
    >>> kl_divergence([[0.5, 0.5]], [[0.25, 0.75]], smoothing=0.0, base=2).round(4)
    array([0.2075])
    """
    if not smoothing >= 0:
        raise ValueError(f"smoothing must be a non-negative number, got {smoothing!r}")
    if base is not None and not (base > 0 and base != 1):
        raise ValueError(f"base must be a positive number other than 1, got {base!r}")
    true, pred = check_distributions(y_true, y_pred, normalize=normalize, atol=atol)
    smoothed = (pred.values + smoothing) / (1.0 + true.lengths[:, None] * smoothing)
    divergence = _xlogy_ratio(true.values, smoothed)
    if base is not None:
        divergence = divergence / np.log(base)
    return np.clip(divergence, 0.0, None)


def align(options_from: Sequence[str], probs, options_to: Sequence[str], *, drop_extra: bool = False) -> np.ndarray:
    """Re-key one distribution from one option list onto another, by option text.

    Letters are presentation: a distribution is only meaningful next to the
    option texts it belongs to. ``probs[i]`` is the mass of ``options_from[i]``;
    the result ``r[j]`` is the mass of ``options_to[j]`` (0 when that option is
    absent from ``options_from``). Texts must match exactly. An option of
    ``options_from`` with positive mass that ``options_to`` lacks raises
    ``ValueError``, unless ``drop_extra=True`` (that mass is then lost).
    ``probs`` may also be a ``dict`` keyed by option text (``options_from`` is
    then ignored and may be None).

    >>> align(["No", "Yes"], [0.3, 0.7], ["Yes", "No", "Refused"])
    array([0.7, 0.3, 0. ])
    >>> align(None, {"Yes": 1.0}, ["Yes", "No"])
    array([1., 0.])
    """
    if isinstance(probs, Mapping):
        options_from, probs = list(probs.keys()), list(probs.values())
    if options_from is None:
        raise ValueError("options_from is required unless probs is a dict keyed by option text")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or len(probs) != len(options_from):
        raise ValueError(f"probs has shape {probs.shape} but options_from has {len(options_from)} options")
    index_to = {}
    for j, option in enumerate(options_to):
        if option in index_to:
            raise ValueError(f"options_to lists {option!r} twice (positions {index_to[option]} and {j})")
        index_to[option] = j
    seen: dict[str, int] = {}
    result = np.zeros(len(index_to))
    for i, (option, mass) in enumerate(zip(options_from, probs)):
        if option in seen:
            raise ValueError(f"options_from lists {option!r} twice (positions {seen[option]} and {i})")
        seen[option] = i
        j = index_to.get(option)
        if j is not None:
            result[j] = mass
        elif mass > 0 and not drop_extra:
            raise ValueError(
                f"option {option!r} (mass {mass:g}) is not among options_to; pass drop_extra=True to discard it"
            )
    return result
