"""``distalign reproduce``: caching, flags and reasons on a hand-made fixture; the acceptance numbers on the mirror."""

from __future__ import annotations

import json
import time

import pytest

import distalign_data.paper_import as paper_import
import distalign_data.reproduce as reproduce_module
from distalign_data import cli
from distalign_data.reproduce import format_report, reproduce

from .paper_import_helpers import (
    fixture_rows,
    write_paper_results,
)

HEADLINE = ("1a", "all", "persona", "gpt-4", "sequence")
# gpt-4 sequence, persona, one row per dataset (see test_scoring for the arithmetic):
# paper (0.3 + 0.15 + 0.4) / 3, corrected (1/3 + 0.15 + 0.4) / 3.
PAPER_MEAN = 0.85 / 3
CORRECTED_MEAN = (1 / 3 + 0.55) / 3


@pytest.fixture()
def source(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTALIGN_CACHE", str(tmp_path / "cache"))
    return write_paper_results(tmp_path / "upstream")


def _rows_by_key(rows):
    return {(r["protocol"],) + tuple(r[k] for k in ("table", "dataset", "steering", "model", "method")): r for r in rows}


def test_reproduce_imports_once_and_scores_both_protocols(source, tmp_path, monkeypatch):
    calls = []
    real = paper_import.import_paper_outputs
    monkeypatch.setattr(paper_import, "import_paper_outputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = reproduce(source, rows=fixture_rows(), cache_dir=tmp_path / "imports")
    second = reproduce(source, rows=fixture_rows(), cache_dir=tmp_path / "imports")
    assert len(calls) == 1
    assert [r["mean"] for r in first] == [r["mean"] for r in second]
    by_key = _rows_by_key(first)
    assert by_key[("paper",) + HEADLINE]["mean"] == pytest.approx(PAPER_MEAN)
    assert by_key[("corrected",) + HEADLINE]["mean"] == pytest.approx(CORRECTED_MEAN)
    assert {r["protocol"] for r in first} == {"paper", "corrected"}
    assert all({"table", "dataset", "steering", "model", "method", "protocol", "mean", "ci_low", "ci_high", "n"} <= set(r)
               for r in first)
    # The corrected value differs from the paper's by more than the (zero-width) CI: flagged and explained.
    corrected = by_key[("corrected",) + HEADLINE]
    assert corrected["flag"] and "1 re-parses differ from the stored vectors" in corrected["reason"]
    # Parse failures come from the corrected protocol only.
    assert any(r["table"] == "parse_failures" and r["protocol"] == "corrected" for r in first)
    assert not any(r["table"] == "parse_failures" and r["protocol"] == "paper" for r in first)


def test_published_numbers_flag_only_beyond_tolerance(source, tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce_module, "PUBLISHED", {HEADLINE: (round(PAPER_MEAN, 3), None, None)})
    row = _rows_by_key(reproduce(source, rows=fixture_rows(), cache_dir=tmp_path / "i"))[("paper",) + HEADLINE]
    assert row["published"] == 0.283 and not row["flag"]
    monkeypatch.setattr(reproduce_module, "PUBLISHED", {HEADLINE: (0.29, None, "known artefact")})
    row = _rows_by_key(reproduce(source, rows=fixture_rows(), cache_dir=tmp_path / "i"))[("paper",) + HEADLINE]
    assert row["flag"] and row["reason"] == "known artefact"
    monkeypatch.setattr(reproduce_module, "PUBLISHED", {HEADLINE: (0.29, None, None)})
    row = _rows_by_key(reproduce(source, rows=fixture_rows(), cache_dir=tmp_path / "i"))[("paper",) + HEADLINE]
    assert row["reason"] == "unexplained difference from the paper"


def test_format_report_shows_published_paper_and_corrected():
    rows = [
        {"table": "1a", "dataset": "all", "steering": "persona+few_shot", "model": "m", "method": "verbalize",
         "protocol": protocol, "mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "n": 3,
         "published": 0.25, "flag": flag, "reason": "why"}
        for protocol, mean, flag in (("paper", 0.251, False), ("corrected", 0.2, True))
    ]
    text = format_report(rows)
    assert "Table 1a" in text
    line = [l for l in text.splitlines() if l.startswith("all")][0]
    assert "0.250" in line and "0.251 ±0.010" in line and "0.200 ±0.010" in line and "FLAG [corrected] why" in line


def test_reproduce_cli_writes_json(source, tmp_path, monkeypatch, capsys):
    import distalign_data.benchmarks as benchmarks
    import distalign_data.sources as sources

    monkeypatch.setattr(benchmarks, "load_rows", lambda dataset, source=None: fixture_rows()[dataset])
    monkeypatch.setattr(sources, "resolve_source", lambda *a, **k: source)
    out = tmp_path / "rows.json"
    assert cli.main(["reproduce", "--protocol", "paper", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows and {r["protocol"] for r in rows} == {"paper"}
    assert "Table 1a" in capsys.readouterr().out


@pytest.mark.mirror
def test_mirror_reproduce_acceptance(paper_run, mirror_source):
    started = time.perf_counter()
    rows = reproduce(mirror_source)
    elapsed = time.perf_counter() - started
    by_key = _rows_by_key(rows)
    paper_1a = [r for r in rows if r["protocol"] == "paper" and r["table"] == "1a" and r["model"] != "baseline"]
    assert len(paper_1a) == 16
    for row in paper_1a:
        assert abs(row["mean"] - row["published"]) <= 0.002, row
        assert not row["flag"]
    gaps = [r for r in rows if r["protocol"] == "paper" and r["table"] == "1b"]
    assert len(gaps) == 5 and all(abs(r["mean"] - r["published"]) <= 0.005 for r in gaps)
    # Every flag carries a reason; every published number is either matched or flagged.
    assert all(r["reason"] for r in rows if r["flag"])
    assert all(r["flag"] or abs(r["mean"] - r["published"]) <= 0.005
               for r in rows if r["protocol"] == "paper" and r["published"] is not None)
    humans = by_key[("paper", "2", "opinionqa+nytimes", "persona+few_shot", "humans", "verbalize")]
    assert humans["mean"] == pytest.approx(0.2466, abs=0.002) and humans["flag"]
    # The no-steering OpinionQA value the stored (prompt-aligned) vectors give (protocol 8.1).
    assert by_key[("paper", "10", "opinionqa", "none", "gpt-4", "verbalize")]["mean"] == pytest.approx(0.197, abs=0.003)
    # Llama's sequence answers that stop after "Here are 30 ..." (287 of 5,217, spread over the steerings).
    failures = [r for r in rows if r["table"] == "parse_failures" and r["model"] == "llama3-70b"
                and r["method"] == "sequence"]
    assert sorted(r["steering"] for r in failures) == ["few_shot", "none", "persona"]
    assert sum(r["mean"] * r["n"] for r in failures) / sum(r["n"] for r in failures) == pytest.approx(0.055, abs=0.01)
    # The --json row shape of issue 4: the labels come from these sets only.
    model_methods = {"logprobs", "temperature_scaled_logprobs", "sequence", "verbalize"}
    for row in rows:
        assert row["dataset"] in {"opinionqa", "nytimes", "globalvalues", "all", "opinionqa+nytimes"}, row
        assert row["steering"] in {"none", "persona", "few_shot", "persona+few_shot"}, row
        assert row["protocol"] in {"paper", "corrected"}, row
        assert row["method"] in ({"uniform", "majority", "discretization"} if row["model"] == "baseline"
                                 else model_methods), row
    assert {r["model"] for r in rows} == {"anthropic_haiku", "anthropic_opus", "gpt-3.5-turbo-0125", "gpt-4",
                                          "llama3-70b", "baseline", "humans"}
    # Held-out temperature scaling, side by side with the oracle fit.
    heldout = {r["model"]: r["mean"] for r in rows if r["table"] == "1a_heldout_ts"}
    assert set(heldout) == {"gpt-3.5-turbo-0125", "gpt-4", "llama3-70b"}
    oracle = by_key[("corrected", "1a", "all", "persona+few_shot", "gpt-4", "temperature_scaled_logprobs")]["mean"]
    assert heldout["gpt-4"] == pytest.approx(oracle, abs=0.01)
    # Warm cache: import already done by the paper_run fixture.
    assert elapsed < 60
