"""Figures of the benchmark, in the shapes of the paper's figures (PNG and PDF each).

Every function takes already aggregated rows (a ``pandas.DataFrame`` or a list of
dicts), draws one figure with matplotlib's ``Agg`` backend and writes
``<stem>.png`` and ``<stem>.pdf``; it returns the two paths. The data are computed
elsewhere (``distalign_data.reports``, ``distalign_data.coin``) so the numbers in a
figure are the numbers in the tables.

Figures have a fixed size: panels are ``PANEL_WIDTH_IN`` × ``PANEL_HEIGHT_IN``
inches, plus ``TITLE_HEIGHT_IN`` for the title and ``LEGEND_HEIGHT_IN`` for the
legend strip, at ``DPI`` dots per inch, so a grid of ``r`` × ``c`` panels is
``c * 400`` × ``r * 300 + 100`` pixels (:func:`figure_size_px`).

>>> figure_size_px(n_rows=2, n_cols=3)
(1200, 700)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from distalign_data.human_baseline import HUMAN_MODEL
from distalign_data.names import (
    DATASETS,
    DERIVED_METHODS,
    EXPRESSION_METHODS,
    PAPER_MODELS,
    STEERING_METHODS,
)

DPI = 100
PANEL_WIDTH_IN = 4.0
PANEL_HEIGHT_IN = 3.0
LEGEND_HEIGHT_IN = 0.6
TITLE_HEIGHT_IN = 0.4
# Wider grids wrap onto more rows so that labels stay readable.
MAX_COLUMNS = 3

# Display labels, as the paper's tables and figures write them.
METHOD_LABELS = {
    "logprobs": "Log-p",
    "temperature_scaled_logprobs": "TS-Log-p",
    "sequence": "Seq",
    "verbalize": "V",
}
STEERING_LABELS = {"none": "No steering", "persona": "Persona", "few_shot": "Few-shot"}
DATASET_LABELS = {
    "opinionqa_subset": "OpinionQA",
    "global_opinionqa_contentious": "GlobalOpinionQA",
    "nyt_books": "NYT Books",
}
HUMAN_REFERENCE = "human"
TV_AXIS_LABEL = "mean total variation (0–1, lower is better)"
PROBABILITY_AXIS_LABEL = "probability (0–1)"

_METHOD_ORDER = EXPRESSION_METHODS + DERIVED_METHODS
_STEERING_COLOURS = {"none": "#9e9e9e", "persona": "#d95f02", "few_shot": "#1b9e77", HUMAN_REFERENCE: "#222222"}
_METHOD_COLOURS = {
    "logprobs": "#7570b3",
    "temperature_scaled_logprobs": "#e7298a",
    "sequence": "#d95f02",
    "verbalize": "#1b9e77",
}


def label(name: str) -> str:
    """The display label of a canonical name (model folders, methods, steering, datasets).

    >>> label("few_shot"), label("gpt-4"), label("humans"), label("hf:my/model")
    ('Few-shot', 'GPT-4', 'Humans', 'hf:my/model')
    """
    if name == HUMAN_MODEL:
        return "Humans"
    for table in (METHOD_LABELS, STEERING_LABELS, DATASET_LABELS, PAPER_MODELS):
        if name in table:
            return table[name]
    return str(name)


def figure_size_px(*, n_rows: int, n_cols: int) -> tuple[int, int]:
    """Width and height in pixels of a PNG with ``n_rows`` × ``n_cols`` panels, a title and a legend strip."""
    width, height = _figure_size_in(n_rows, n_cols)
    return round(width * DPI), round(height * DPI)


def grid_shape(n_panels: int) -> tuple[int, int]:
    """Rows and columns for ``n_panels`` panels, at most ``MAX_COLUMNS`` wide.

    >>> grid_shape(1), grid_shape(3), grid_shape(5)
    ((1, 1), (1, 3), (2, 3))
    """
    if n_panels < 1:
        raise ValueError(f"a figure needs at least one panel, got {n_panels}")
    n_cols = min(n_panels, MAX_COLUMNS)
    return math.ceil(n_panels / n_cols), n_cols


def _figure_size_in(n_rows: int, n_cols: int) -> tuple[float, float]:
    return n_cols * PANEL_WIDTH_IN, n_rows * PANEL_HEIGHT_IN + TITLE_HEIGHT_IN + LEGEND_HEIGHT_IN


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """Distinct values, known names in ``order`` first, the rest sorted."""
    distinct = set(values)
    return [v for v in order if v in distinct] + sorted(distinct - set(order))


def _frame(rows: Any, required: Sequence[str], figure: str):
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError(f"{figure}: no data to plot")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{figure}: data lack the columns {missing}")
    return frame


def _new_figure(n_rows: int, n_cols: int):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    width, height = _figure_size_in(n_rows, n_cols)
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    # Title and legend strips have a fixed height in inches; panels fill the rest
    # (the extra inches leave room for panel titles and tick labels).
    grid = fig.add_gridspec(n_rows, n_cols, left=0.75 / width, right=1 - 0.15 / width,
                            top=1 - (TITLE_HEIGHT_IN + 0.3) / height, bottom=(LEGEND_HEIGHT_IN + 0.65) / height,
                            wspace=0.3, hspace=0.7)
    axes = [[fig.add_subplot(grid[r, c]) for c in range(n_cols)] for r in range(n_rows)]
    return fig, axes


def _title(fig, text: str) -> None:
    import textwrap

    # About 11 characters of 10-11 pt text per inch: wrap titles that would not fit (one-panel figures).
    width = int(fig.get_figwidth() * 11)
    lines = textwrap.wrap(text, width) if len(text) > width else [text]
    fig.suptitle("\n".join(lines), fontsize=11 if len(lines) == 1 else 9.5,
                 y=1 - TITLE_HEIGHT_IN / 2 / fig.get_figheight(), va="center")


def _save(fig, stem: str | os.PathLike, handles, labels) -> list[Path]:
    import matplotlib.pyplot as plt

    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False,
                   bbox_to_anchor=(0.5, 0.0), fontsize=9)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    # No bbox_inches="tight": the PNG keeps the documented pixel size.
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _hide_unused(axes, n_used: int) -> list:
    flat = [ax for row in axes for ax in row]
    for ax in flat[n_used:]:
        ax.set_visible(False)
    return flat[:n_used]


def plot_tv_by_dataset_steering(table: Any, stem: str | os.PathLike) -> list[Path]:
    """Figure 4 shape: mean TV (with CI) of each model, per dataset (columns) and expression method (rows).

    ``table`` rows carry ``dataset, steering, model, method, mean, ci_low, ci_high``
    (the per dataset × steering table). Bars are grouped by model and coloured by
    steering method.
    """
    import numpy as np

    frame = _frame(table, ("dataset", "steering", "model", "method", "mean", "ci_low", "ci_high"), "Figure 4")
    methods = _ordered(frame["method"], _METHOD_ORDER)
    datasets = _ordered(frame["dataset"], DATASETS)
    steerings = _ordered(frame["steering"], STEERING_METHODS)
    models = _ordered(frame["model"], tuple(PAPER_MODELS))
    fig, axes = _new_figure(len(methods), len(datasets))
    handles: dict[str, Any] = {}
    y_top = float(np.nanmax(frame["ci_high"].to_numpy(dtype=float))) if frame["ci_high"].notna().any() else 1.0
    for r, method in enumerate(methods):
        for c, dataset in enumerate(datasets):
            ax = axes[r][c]
            cell = frame[(frame["method"] == method) & (frame["dataset"] == dataset)]
            # Only the steering methods this dataset has (GlobalOpinionQA has no unsteered runs) take a bar slot.
            present = [s for s in steerings if (frame.loc[frame["dataset"] == dataset, "steering"] == s).any()]
            width = 0.8 / len(present)
            for s, steering in enumerate(present):
                part = cell[cell["steering"] == steering].set_index("model").reindex(models)
                x = np.arange(len(models)) + (s - (len(present) - 1) / 2) * width
                mean = part["mean"].to_numpy(dtype=float)
                err = np.vstack([mean - part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float) - mean])
                bars = ax.bar(x, mean, width, color=_STEERING_COLOURS.get(steering), label=label(steering),
                              yerr=np.nan_to_num(err), capsize=2, error_kw={"linewidth": 0.8})
                handles.setdefault(steering, bars)
            ax.set_xticks(np.arange(len(models)), [label(m) for m in models], rotation=30, ha="right", fontsize=8)
            ax.set_xlim(-0.6, len(models) - 0.4)
            ax.set_ylim(0, max(0.05, min(1.0, y_top * 1.1)))
            # Say "no data" rather than leave a gap that reads as a TV of 0.
            for i, model in enumerate(models):
                if not (cell["model"] == model).any():
                    ax.text(i, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="#777777")
            ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} · {label(method)}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if c == 0:
                ax.set_ylabel("mean TV (lower is better)", fontsize=9)
    _title(fig, "Mean total variation by dataset and steering method (error bars: 95% bootstrap CI)")
    order = [s for s in steerings if s in handles]
    return _save(fig, stem, [handles[s] for s in order], [label(s) for s in order])


def plot_likert_marginals(marginals: Any, stem: str | os.PathLike, *, title: str = "") -> list[Path]:
    """Figure 5 shape: the marginal distribution of NYT Likert ratings per group.

    ``marginals`` rows carry ``model, source, group, option, probability`` where
    ``source`` is a steering method or ``"human"`` (the reference) and
    ``probability`` is the mean over books of the probability of that rating. One
    row of panels per model, one column per group; the human bars repeat in every
    row so each panel compares steered models with people.
    """
    import numpy as np

    frame = _frame(marginals, ("model", "source", "group", "option", "probability"), "Figure 5")
    models = _ordered(frame.loc[frame["source"] != HUMAN_REFERENCE, "model"], tuple(PAPER_MODELS))
    groups = _ordered(frame["group"], ("Democrat", "Republican", "Male", "Female"))
    options = list(dict.fromkeys(frame["option"]))
    sources = _ordered(frame["source"], (HUMAN_REFERENCE,) + STEERING_METHODS)
    if not models:
        raise ValueError("Figure 5: no model rows, only the human reference")
    fig, axes = _new_figure(len(models), len(groups))
    width = 0.8 / len(sources)
    # One scale for every panel, so bars compare across models and groups.
    y_top = min(1.0, math.ceil((float(frame["probability"].max()) + 0.05) * 10) / 10)
    handles: dict[str, Any] = {}
    for r, model in enumerate(models):
        for c, group in enumerate(groups):
            ax = axes[r][c]
            for s, source in enumerate(sources):
                model_rows = frame["source"] == HUMAN_REFERENCE
                if source != HUMAN_REFERENCE:
                    model_rows = (frame["source"] == source) & (frame["model"] == model)
                part = frame[model_rows & (frame["group"] == group)]
                probs = part.groupby("option")["probability"].mean().reindex(options).to_numpy(dtype=float)
                x = np.arange(len(options)) + (s - (len(sources) - 1) / 2) * width
                name = "human reference" if source == HUMAN_REFERENCE else label(source)
                bars = ax.bar(x, np.nan_to_num(probs), width, color=_STEERING_COLOURS.get(source), label=name)
                handles.setdefault(name, bars)
            ax.set_xticks(np.arange(len(options)), [_wrap(o) for o in options], fontsize=8)
            ax.set_ylim(0, y_top)
            ax.set_title(f"{label(model)} · {group}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if c == 0:
                ax.set_ylabel("mean probability (0–1)", fontsize=9)
            if r == len(models) - 1:
                ax.set_xlabel("rating", fontsize=9)
    _title(fig, title or "NYT Books: marginal distribution of Likert ratings")
    return _save(fig, stem, list(handles.values()), list(handles))


def _wrap(text: str, width: int = 10) -> str:
    """Break a long tick label onto several lines at spaces."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def plot_calibration(bins: Any, stem: str | os.PathLike) -> list[Path]:
    """Figure 6 shape: reliability curves of log-prob distributions before and after temperature scaling.

    ``bins`` rows carry ``model, variant, mean_predicted, mean_observed, count``:
    per bin of predicted option probability, the mean predicted probability and
    the mean reference (human) probability of the same options. ``variant`` names
    the curve (``"raw"``, ``"oracle τ"``, ``"held-out τ"`` ...); an optional ``ece``
    column is printed in the panel. One panel per model; the diagonal is perfect
    calibration.
    """
    frame = _frame(bins, ("model", "variant", "mean_predicted", "mean_observed", "count"), "Figure 6")
    models = _ordered(frame["model"], tuple(PAPER_MODELS))
    variants = list(dict.fromkeys(frame["variant"]))
    n_rows, n_cols = grid_shape(len(models))
    fig, axes = _new_figure(n_rows, n_cols)
    colours = ["#444444", "#e7298a", "#1b9e77", "#7570b3"]
    handles: dict[str, Any] = {}
    for i, (ax, model) in enumerate(zip(_hide_unused(axes, len(models)), models)):
        ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1)
        ece_lines = []
        for v, variant in enumerate(variants):
            part = frame[(frame["model"] == model) & (frame["variant"] == variant) & (frame["count"] > 0)]
            part = part.sort_values("mean_predicted")
            colour = colours[v % len(colours)]
            (line,) = ax.plot(part["mean_predicted"], part["mean_observed"], color=colour, label=variant, linewidth=1.2)
            # Marker area grows with the points in the bin, so sparse bins do not look as solid as full ones.
            share = part["count"].to_numpy(dtype=float) / max(float(part["count"].sum()), 1.0)
            ax.scatter(part["mean_predicted"], part["mean_observed"], s=8 + 120 * share, color=colour, zorder=3)
            handles.setdefault(variant, line)
            if "ece" in part and len(part):
                ece_lines.append(f"ECE {variant}: {part['ece'].iloc[0]:.3f}")
        if ece_lines:
            ax.text(0.97, 0.03, "\n".join(ece_lines), transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "#cccccc"})
        _probability_panel(ax, label(model), "predicted option probability (0–1)",
                           "human probability (0–1)" if i % n_cols == 0 else None, margin=0.0)
    _title(fig, "Calibration of log-prob distributions before and after temperature scaling (marker area ∝ points in bin)")
    return _save(fig, stem, list(handles.values()), list(handles))


def _probability_panel(ax: Any, title: str, xlabel: str, ylabel: str | None, *, margin: float) -> None:
    """A panel whose axes are both probabilities: [0, 1] (plus ``margin``), grid, title, labels."""
    ax.set_xlim(-margin, 1 + margin)
    ax.set_ylim(-margin, 1 + margin)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xlabel(xlabel, fontsize=9)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=9)


def plot_coin(points: Any, stem: str | os.PathLike) -> list[Path]:
    """Figure 2 shape: the biased coin, stated P(heads) against the P(heads) a model expresses.

    ``points`` rows carry ``model, method, stated_p, expressed_p`` and optionally
    ``expressed_sd`` (spread over samples, drawn as error bars). One panel per
    model, one line per expression method; the diagonal is a perfect coin.
    """
    frame = _frame(points, ("model", "method", "stated_p", "expressed_p"), "Figure 2")
    models = _ordered(frame["model"], tuple(PAPER_MODELS))
    methods = _ordered(frame["method"], _METHOD_ORDER)
    n_rows, n_cols = grid_shape(len(models))
    fig, axes = _new_figure(n_rows, n_cols)
    handles: dict[str, Any] = {}
    for i, (ax, model) in enumerate(zip(_hide_unused(axes, len(models)), models)):
        ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1)
        for method in methods:
            part = frame[(frame["model"] == model) & (frame["method"] == method)].sort_values("stated_p")
            if part.empty:
                continue
            sd = part["expressed_sd"].fillna(0).to_numpy(dtype=float) if "expressed_sd" in part else None
            line = ax.errorbar(part["stated_p"], part["expressed_p"], yerr=sd, marker="o", markersize=4,
                               capsize=2, color=_METHOD_COLOURS.get(method), label=label(method))
            handles.setdefault(label(method), line)
        _probability_panel(ax, label(model), "stated P(heads) (0–1)",
                           "expressed P(heads) (0–1)" if i % n_cols == 0 else None, margin=0.03)
    _title(fig, "Biased coin: stated versus expressed probability of heads (error bars: sd over samples)")
    return _save(fig, stem, list(handles.values()), list(handles))
