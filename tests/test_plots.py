"""Figures: each is written as PNG and PDF, non-empty, at the documented pixel size."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from distalign_data import plots

MODELS = ("gpt-4", "llama3-70b")
LIKERT = ("1: Very unlikely", "2: Somewhat unlikely", "3: Somewhat likely", "4: Very likely")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (read independently of matplotlib)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_figure(paths: list[Path], width: int, height: int) -> None:
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png_size(png) == (width, height)
    # A blank figure compresses to a few kB; drawn panels need far more.
    assert png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1_000


def test_figure_size_follows_panels():
    # 4 in x 100 dpi per column; 3 in per row plus 0.4 in title and 0.6 in legend.
    assert plots.figure_size_px(n_rows=1, n_cols=1) == (400, 400)
    assert plots.figure_size_px(n_rows=3, n_cols=2) == (800, 1000)
    assert plots.grid_shape(4) == (2, 3)


def test_tv_by_dataset_steering(tmp_path):
    rows = [
        {"dataset": d, "steering": s, "model": m, "method": me, "mean": 0.3, "ci_low": 0.25, "ci_high": 0.35}
        for d in ("opinionqa_subset", "nyt_books", "global_opinionqa_contentious")
        for s in ("persona", "few_shot")
        for m in MODELS
        for me in ("sequence", "verbalize")
    ]
    # 2 methods (rows) x 3 datasets (columns).
    assert_figure(plots.plot_tv_by_dataset_steering(rows, tmp_path / "fig4"), 1200, 700)


def test_likert_marginals(tmp_path):
    rows = [
        {"model": "", "source": "human", "group": g, "option": o, "probability": 0.25}
        for g in ("Democrat", "Republican")
        for o in LIKERT
    ]
    rows += [
        {"model": m, "source": s, "group": g, "option": o, "probability": p}
        for m in MODELS
        for s in ("persona", "few_shot")
        for g in ("Democrat", "Republican")
        for o, p in zip(LIKERT, (0.1, 0.2, 0.3, 0.4))
    ]
    assert_figure(plots.plot_likert_marginals(rows, tmp_path / "fig5"), 800, 700)


def test_calibration(tmp_path):
    rows = [
        {"model": m, "variant": v, "mean_predicted": b / 10, "mean_observed": (b / 10) ** 1.3, "count": 4}
        for m in ("gpt-4", "llama3-70b", "anthropic_haiku", "gpt-3.5-turbo-0125")
        for v in ("raw", "oracle τ")
        for b in range(1, 10)
    ]
    # 4 models wrap onto 2 rows of 3.
    assert_figure(plots.plot_calibration(rows, tmp_path / "fig6"), 1200, 700)


def test_coin(tmp_path):
    rows = [
        {"model": "hf:tiny", "method": me, "stated_p": p / 10, "expressed_p": p / 10, "expressed_sd": 0.05}
        for me in ("logprobs", "sequence", "verbalize")
        for p in range(11)
    ]
    assert_figure(plots.plot_coin(rows, tmp_path / "fig2"), 400, 400)


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Figure 2: no data"):
        plots.plot_coin([], tmp_path / "x")
    with pytest.raises(ValueError, match=r"lack the columns \['stated_p'"):
        plots.plot_coin([{"model": "m", "method": "sequence", "expressed_p": 0.1}], tmp_path / "x")
