"""Score tables and table builders, on hand-made records with values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distalign_data import cli, scoring
from distalign_data.paper_import import import_paper_outputs
from distalign_data.records import RecordStore, RunRecord

from .paper_import_helpers import (
    Q,
    fixture_rows,
    write_paper_results,
)


@pytest.fixture()
def fixture_records(tmp_path):
    source = write_paper_results(tmp_path / "upstream")
    return import_paper_outputs(tmp_path / "run", source=source, rows=fixture_rows()).records()


def _tv(frame, model, method, steering, row_id):
    line = frame[(frame.model == model) & (frame.method == method) & (frame.steering == steering)
                 & (frame.row_id == row_id)]
    assert len(line) == 1
    return float(line.tv.iloc[0])


def test_score_table_columns(fixture_records):
    frame = scoring.score_records(fixture_records, fixture_rows(), "corrected")
    assert tuple(frame.columns) == scoring.SCORE_COLUMNS
    assert len(frame) == len(fixture_records) == 8
    assert set(frame.protocol) == {"corrected"}


def test_paper_protocol_uses_stored_vectors_by_position(fixture_records):
    frame = scoring.score_records(fixture_records, fixture_rows(), "paper")
    dem, rep = f"{Q}/Democrat", f"{Q}/Republican"
    # stored [0.3, 0.2, 0.5] vs stored reference [0.3, 0.5, 0.2]: ½(0 + 0.3 + 0.3)
    assert _tv(frame, "gpt-4", "sequence", "persona", dem) == pytest.approx(0.3)
    # Llama's dict stored in response order [0.5, 0.3, 0.2], read by position: ½(0.2 + 0.2 + 0)
    assert _tv(frame, "llama3-70b", "verbalize", "persona", dem) == pytest.approx(0.2)
    # unnormalised log-probs [0.5, 0.25, 0]: ½(0.2 + 0.25 + 0.2)
    assert _tv(frame, "gpt-4", "logprobs", "persona", dem) == pytest.approx(0.325)
    # no steering, Democrat: thirds vs [0.3, 0.5, 0.2]: ½(1/30 + 1/6 + 2/15)
    assert _tv(frame, "gpt-4", "sequence", "none", dem) == pytest.approx(1 / 6)
    # the Republican reference has 2 letters for a 3-letter output: dropped, as upstream
    assert np.isnan(_tv(frame, "gpt-4", "sequence", "none", rep))


def test_corrected_protocol_aligns_by_option_text(fixture_records):
    frame = scoring.score_records(fixture_records, fixture_rows(), "corrected")
    dem, rep = f"{Q}/Democrat", f"{Q}/Republican"
    # re-parse [No 2/6, Some 1/6, Top 3/6] -> survey order [Top 1/2, Some 1/6, No 1/3] vs [0.2, 0.5, 0.3]
    assert _tv(frame, "gpt-4", "sequence", "persona", dem) == pytest.approx(0.5 * (0.3 + 1 / 3 + 1 / 30))
    # keys read by name: [Top 0.5, Some 0.2, No 0.3] vs [0.2, 0.5, 0.3]
    assert _tv(frame, "llama3-70b", "verbalize", "persona", dem) == pytest.approx(0.3)
    # [Top 0, Some 1/3, No 2/3] vs [0.2, 0.5, 0.3]
    assert _tv(frame, "gpt-4", "logprobs", "persona", dem) == pytest.approx(0.5 * (0.2 + 1 / 6 + 11 / 30))
    # thirds vs Republican [0.6, 0.4, 0]: ½(4/15 + 1/15 + 1/3)
    assert _tv(frame, "gpt-4", "sequence", "none", rep) == pytest.approx(1 / 3)
    # NYT [0, .25, .25, .5] vs [.1, .2, .3, .4]; GV [.5, .5] vs France [.9, .1]
    nyt = frame[frame.dataset == "nyt_books"].tv.iloc[0]
    gv = frame[frame.dataset == "global_opinionqa_contentious"].tv.iloc[0]
    assert (nyt, gv) == (pytest.approx(0.15), pytest.approx(0.4))


def _record(model="m", method="sequence", steering="persona", row_id=f"{Q}/Democrat", distribution=(0.0, 1.0, 0.0),
            status="ok", extra=None, options=("No priority", "Some priority", "Top priority")):
    return RunRecord(model=model, dataset="opinionqa_subset", row_id=row_id, question_id=Q,
                     group_attribute="POLPARTY", group=row_id.split("/")[1], method=method, steering=steering,
                     options=list(options), distribution=None if status == "failed" else list(distribution),
                     parse_status=status, extra=extra or {})


def test_failed_parses_excluded_under_corrected_and_zero_under_paper():
    failed = _record(status="failed")
    corrected = scoring.score_records([failed], fixture_rows(), "corrected")
    paper = scoring.score_records([failed], fixture_rows(), "paper")
    assert np.isnan(corrected.tv.iloc[0]) and corrected.parse_status.iloc[0] == "failed"
    # A new run without stored vectors is scored the paper's way: all zeros give ½·Σy = 0.5.
    assert paper.tv.iloc[0] == pytest.approx(0.5)


def test_unknown_row_and_protocol_raise():
    with pytest.raises(ValueError, match="no such benchmark row"):
        scoring.score_records([_record(row_id="nope/Democrat")], fixture_rows(), "corrected")
    with pytest.raises(ValueError, match="protocol"):
        scoring.score_records([], fixture_rows(), "vibes")


def _frame(lines):
    rows = [dict(model=m, dataset=d, steering=s, method=me, row_id=f"{d}-{i}", question_id="q", group_attribute="A",
                 group="g", protocol="corrected", tv=tv, parse_status="ok" if tv == tv else "failed")
            for i, (m, d, s, me, tv) in enumerate(lines)]
    return pd.DataFrame(rows, columns=list(scoring.SCORE_COLUMNS))


def test_leaderboard_weights_datasets_equally_and_labels_coverage():
    frame = _frame([
        ("a", "opinionqa_subset", "persona", "verbalize", 0.1),
        ("a", "opinionqa_subset", "few_shot", "verbalize", 0.3),
        ("a", "nyt_books", "persona", "verbalize", 0.4),
        ("a", "global_opinionqa_contentious", "persona", "verbalize", 0.7),
        ("a", "global_opinionqa_contentious", "none", "verbalize", 0.0),  # not a headline steering
        ("b", "nyt_books", "persona", "sequence", 0.6),
        ("b", "nyt_books", "persona", "sequence", float("nan")),  # failed: excluded
    ])
    board = scoring.leaderboard(frame, table="1a", protocol="corrected", seed=3)
    a, b = board
    # (mean(0.1, 0.3) + 0.4 + 0.7) / 3 = 1.3 / 3
    assert (a["model"], a["mean"], a["n"], a["dataset"], a["steering"]) == ("a", pytest.approx(1.3 / 3), 4, "all",
                                                                           "persona+few_shot")
    assert (b["mean"], b["n"], b["dataset"], b["steering"]) == (pytest.approx(0.6), 1, "nytimes", "persona")
    assert set(a) == set(scoring.TABLE_KEYS)


def test_paper_protocol_mean_is_the_bootstrap_mean():
    frame = _frame([("a", "nyt_books", "persona", "verbalize", v) for v in (0.25, 0.25, 0.25)])
    (row,) = scoring.leaderboard(frame, table="1a", protocol="paper")
    assert row["mean"] == pytest.approx(0.25) and row["ci_low"] == pytest.approx(0.25)


def test_ks_gap_table():
    frame = _frame([("a", "nyt_books", "persona", "sequence", 0.3)] * 2 + [("a", "nyt_books", "persona", "verbalize", 0.2)] * 2)
    # Row ids must pair up for the corrected (paired) gap.
    frame["row_id"] = ["r1", "r2", "r1", "r2"]
    for protocol in ("paper", "corrected"):
        (row,) = scoring.ks_gap_table(frame, table="1b", protocol=protocol)
        assert row["mean"] == pytest.approx(0.3 / 0.2 - 1) and row["method"] == "sequence"


def test_dataset_tables_and_parse_failures():
    frame = _frame([
        ("a", "nyt_books", "none", "sequence", 0.2),
        ("a", "nyt_books", "persona", "sequence", 0.4),
        ("a", "nyt_books", "persona", "sequence", float("nan")),
        ("a", "nyt_books", "few_shot", "sequence", 0.6),
    ])
    tables = {(r["steering"]): r["mean"] for r in scoring.dataset_tables(frame, protocol="corrected")}
    assert tables == {"none": pytest.approx(0.2), "persona": pytest.approx(0.4), "few_shot": pytest.approx(0.6),
                      "persona+few_shot": pytest.approx(0.5)}
    failures = {r["steering"]: r for r in scoring.parse_failure_table(frame)}
    # One row per steering: the persona records are 1 failed (the NaN) out of 2.
    assert {s: (r["mean"], r["n"]) for s, r in failures.items()} == {
        "persona": (pytest.approx(0.5), 2), "none": (0.0, 1), "few_shot": (0.0, 1)}
    assert [r["steering"] for r in scoring.parse_failure_table(frame)][0] == "persona"


def test_corrected_baselines_by_hand(fixture_records):
    frame = scoring.score_records(fixture_records, fixture_rows(), "corrected")
    base = scoring.baseline_scores(frame[frame.dataset == "opinionqa_subset"], fixture_rows(), "corrected", seed=0)
    dem = base[base.row_id == f"{Q}/Democrat"].set_index("method").tv
    # uniform thirds vs [0.2, 0.5, 0.3]: ½(2/15 + 1/6 + 1/30); majority one-hot on 0.5: ½(0.2 + 0.5 + 0.3)
    assert dem["uniform"] == pytest.approx(1 / 6)
    assert dem["majority"] == pytest.approx(0.5)
    assert 0 < dem["discretization"] < 0.3
    assert set(base.model) == {"baseline"}


def test_paper_baselines_follow_the_models_output():
    extra = {"paper_distribution": [0.1, 0.2, 0.7], "paper_reference": [0.3, 0.5, 0.2]}
    record = _record(model="gpt-3.5-turbo-0125", steering="none", extra=extra)
    base = scoring.baseline_scores(None, None, "paper", records=[record], seed=0).set_index("method").tv
    # uniform thirds vs [0.3, 0.5, 0.2]: ½(1/30 + 1/6 + 2/15); majority on the model's mode (C): ½(0.3 + 0.5 + 0.8)
    assert base["uniform"] == pytest.approx(1 / 6)
    assert base["majority"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="needs the records"):
        scoring.baseline_scores(None, None, "paper")


def test_score_cli_on_a_partial_run(tmp_path, capsys, monkeypatch):
    import distalign_data.benchmarks as benchmarks

    run = tmp_path / "run"
    RecordStore(run).append([_record(model="hf:tiny", steering="few_shot", distribution=(0.3, 0.5, 0.2))])
    monkeypatch.setattr(benchmarks, "load_rows", lambda dataset, source=None: fixture_rows()[dataset])
    out_json = tmp_path / "board.json"
    assert cli.main(["score", str(run), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "hf:tiny" in printed and "steering few_shot" in printed and "datasets opinionqa" in printed
    import json

    board = json.loads(out_json.read_text())
    # [No .3, Some .5, Top .2] -> survey order [.2, .5, .3]: identical to the Democrat reference.
    assert board[0]["mean"] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.mirror
def test_mirror_table_1a_paper_protocol(paper_run):
    from distalign_data.paper_numbers import PUBLISHED

    store, rows = paper_run
    records = [r for r in store.records() if r.model != "humans"]
    frame = scoring.score_records(records, rows, "paper")
    board = {(r["model"], r["method"]): r["mean"] for r in scoring.leaderboard(frame, table="1a", protocol="paper")}
    published = {(k[3], k[4]): v[0] for k, v in PUBLISHED.items() if k[0] == "1a" and k[3] != "baseline"}
    assert len(published) == 16 and set(published) <= set(board)
    for key, value in published.items():
        assert board[key] == pytest.approx(value, abs=0.002), key
