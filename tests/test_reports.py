"""``distalign report``: table writers, and every table's numbers against the metric API on the same records."""

from __future__ import annotations

import json
import math

import pytest

from distalign_data import report_writers
from distalign_data.report_writers import Table


# ---------------------------------------------------------------------------
# writers


def test_latex_escapes_and_aligns_numbers():
    table = Table("t", "Scores of 50% & more", [{"model": "gpt_4", "mean": 0.25, "p_value": 0.000125}])
    tex = report_writers.to_latex(table)
    assert "\\begin{tabular}{lrr}" in tex
    assert "gpt\\_4 & 0.250 & 0.000125 \\\\" in tex
    assert "\\caption{Scores of 50\\% \\& more}" in tex


def test_long_latex_tables_break_across_pages_and_symbols_compile():
    rows = [{"model": f"m{i}", "tau": 1.0} for i in range(report_writers.LONGTABLE_ROWS + 1)]
    tex = report_writers.to_latex(Table("long", "Fitted τ per model × dataset", rows))
    assert tex.startswith("\\begin{longtable}{lr}") and "\\endhead" in tex and tex.count("\\\\\n") == len(rows) + 3
    assert "Fitted $\\tau$ per model $\\times$ dataset" in tex
    short = report_writers.to_latex(Table("short", "T", rows[:3]))
    assert short.startswith("\\begin{table}[t]")


def test_json_keeps_exact_numbers_and_nan_as_null():
    table = Table("t", "T", [{"mean": 1 / 3, "ci_low": float("nan")}])
    payload = json.loads(report_writers.to_json(table))
    assert payload["rows"] == [{"mean": 1 / 3, "ci_low": None}]


def test_markdown_escapes_pipes_and_csv_round_trips(tmp_path):
    table = Table("t", "T", [{"group": "a|b", "n": 2}, {"group": "c", "n": 3, "extra": 0.5}])
    assert "| a\\|b | 2 |  |" in report_writers.to_markdown(table)
    paths = report_writers.write_table(table, tmp_path, "csv,md")
    assert [p.name for p in paths] == ["t.csv", "t.md"]
    assert (tmp_path / "t.csv").read_text().splitlines() == ["group,n,extra", "a|b,2,", "c,3,0.5"]
    with pytest.raises(ValueError, match="not known"):
        report_writers.parse_formats("md,xlsx")


def test_index_html_embeds_figures_and_tables(tmp_path):
    from distalign_data import plots

    png, _ = plots.plot_coin(
        [{"model": "m", "method": "sequence", "stated_p": p / 10, "expressed_p": p / 10} for p in range(11)],
        tmp_path / "figures" / "coin",
    )
    table = Table("lead", "Leaderboard <1a>", [{"model": "m", "mean": 0.5}])
    report_writers.write_table(table, tmp_path / "tables", ["csv"])
    index = report_writers.write_index_html(
        tmp_path, title="R", summary=["one line"], tables=[table], figures=[("coin", "Coin", png)]
    ).read_text()
    assert "Leaderboard &lt;1a&gt;" in index and "<td class=\"num\">0.500</td>" in index
    assert 'src="data:image/png;base64,iVBORw0KGgo' in index
    assert 'href="figures/coin.pdf"' in index and 'href="tables/lead.csv"' in index


def test_holm_adjustment_by_hand():
    from distalign_data.reports import holm_adjust

    # Sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04).
    assert holm_adjust([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert math.isclose(holm_adjust([0.9])[0], 0.9)


# ---------------------------------------------------------------------------
# a small benchmark: rows and run records written directly

import numpy as np  # noqa: E402

from distalign_data.distributions import align  # noqa: E402
from distalign_data.distributions import total_variation  # noqa: E402
from distalign_data.records import RecordStore  # noqa: E402
from distalign_data.records import RunRecord  # noqa: E402
from distalign_data.statistics import bootstrap_mean_ci  # noqa: E402
from distalign_data.statistics import paired_bootstrap  # noqa: E402

LIKERT = ["1: Very unlikely", "2: Somewhat unlikely", "3: Somewhat likely", "4: Very likely"]
OPTIONS = {"opinionqa_subset": ["Yes", "No", "Refused"], "nyt_books": LIKERT}
GROUPS = {"Democrat": "POLPARTY", "Republican": "POLPARTY"}
MODELS = ("model-a", "model-b")
METHODS = ("logprobs", "sequence", "verbalize")
STEERINGS = ("none", "persona", "few_shot")
N_QUESTIONS = 6
RESAMPLES = 1000  # the report's (and the statistics module's) default


def make_rows() -> list[dict]:
    rng = np.random.default_rng(11)
    rows = []
    for dataset, options in OPTIONS.items():
        for q in range(N_QUESTIONS):
            qid = f"{dataset[:3]}-q{q}"
            for group, attribute in GROUPS.items():
                dist = rng.dirichlet(np.ones(len(options)))
                rows.append({
                    "id": f"{qid}/{group}", "dataset": dataset, "question_id": qid, "question": f"Question {q}?",
                    "options": list(options), "paper_options": list(options), "distribution": dist.tolist(),
                    "group_attribute": attribute, "group": group,
                })
    return rows


def make_records(rows: list[dict], model: str, seed: int) -> list[RunRecord]:
    """One record per row × method × steering; options shown in reversed order, one failed parse per model."""
    rng = np.random.default_rng(seed)
    records = []
    for row in rows:
        for method in METHODS:
            for steering in STEERINGS:
                shown = list(reversed(row["options"]))
                dist = rng.dirichlet(np.ones(len(shown)) * 0.7).tolist()
                failed = (row["id"], method, steering) == (rows[0]["id"], "verbalize", "persona")
                records.append(RunRecord(
                    model=model, dataset=row["dataset"], row_id=row["id"], question_id=row["question_id"],
                    group_attribute=row["group_attribute"], group=row["group"], method=method, steering=steering,
                    options=shown, distribution=None if failed else dist,
                    parse_status="failed" if failed else ("repaired" if rng.random() < 0.2 else "ok"),
                ))
    return records


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    from distalign_data import reports

    base = tmp_path_factory.mktemp("report")
    rows = make_rows()
    records = {}
    for i, model in enumerate(MODELS):
        records[model] = make_records(rows, model, seed=100 + i)
        RecordStore(base / f"run-{model}").append(records[model])
    summary = reports.build_report([base / f"run-{m}" for m in MODELS], base / "out", protocol="corrected",
                                   seed=4, rows=rows)
    return {"rows": rows, "records": [r for m in MODELS for r in records[m]], "out": base / "out", "summary": summary}


def table_rows(report, name: str) -> list[dict]:
    return json.loads((report["out"] / "tables" / f"{name}.json").read_text())["rows"]


def record_tv(record: RunRecord, row: dict) -> float:
    """TV of one record against its row, computed from scratch: align by option text, renormalise."""
    p = align(record.options, record.distribution, row["options"])
    return float(total_variation([row["distribution"]], [p / p.sum()])[0])


def independent_tvs(report) -> dict[tuple, float]:
    by_id = {row["id"]: row for row in report["rows"]}
    return {
        (r.model, r.dataset, r.steering, r.method, r.row_id): record_tv(r, by_id[r.row_id])
        for r in report["records"] if r.distribution is not None
    }


def test_per_group_table_equals_the_metric_api(small_report):
    tvs = independent_tvs(small_report)
    written = table_rows(small_report, "per_group")
    # model x method x steering x dataset x group.
    assert len(written) == len(MODELS) * len(METHODS) * len(STEERINGS) * 2 * 2
    for row in written:
        cell = sorted(
            (row_id, tv) for (m, d, s, me, row_id), tv in tvs.items()
            if (m, d, s, me) == (row["model"], row["dataset"], row["steering"], row["method"]) and row_id.endswith("/" + row["group"])
        )
        expected = bootstrap_mean_ci([tv for _, tv in cell], seed=4, n_resamples=RESAMPLES)
        assert row["n"] == len(cell)
        assert row["mean"] == pytest.approx(np.mean([tv for _, tv in cell]), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), abs=1e-12)
    failed = [r for r in written if (r["model"], r["method"], r["steering"], r["group"]) == ("model-a", "verbalize", "persona", "Democrat")
              and r["dataset"] == "opinionqa_subset"]
    assert failed[0]["n"] == N_QUESTIONS - 1  # the failed parse is excluded, not scored as 0.5


def test_follow_rate_counts_parse_statuses(small_report):
    written = {(r["model"], r["method"], r["steering"], r["dataset"]): r for r in table_rows(small_report, "follow_rate")}
    for key, row in written.items():
        statuses = [r.parse_status for r in small_report["records"] if (r.model, r.method, r.steering, r.dataset) == key]
        assert (row["n"], row["ok"], row["repaired"], row["failed"]) == (
            len(statuses), statuses.count("ok"), statuses.count("repaired"), statuses.count("failed"))
        assert row["follow_rate"] == pytest.approx(statuses.count("ok") / len(statuses))
    assert written[("model-a", "verbalize", "persona", "opinionqa_subset")]["failed"] == 1


def test_significance_equals_paired_bootstrap(small_report):
    tvs = independent_tvs(small_report)
    written = table_rows(small_report, "significance")
    row = next(r for r in written if r["comparison"] == "few_shot vs persona" and r["model"] == "model-b" and r["method"] == "all")
    a, b = {}, {}
    for (m, d, s, me, row_id), tv in sorted(tvs.items()):
        if m == "model-b" and s == "few_shot" and (m, d, "persona", me, row_id) in tvs:
            a.setdefault(d, []).append(tv)
            b.setdefault(d, []).append(tvs[(m, d, "persona", me, row_id)])
    expected = paired_bootstrap(a, b, seed=4, n_resamples=RESAMPLES)
    # Every model has one failed verbalize/persona record: that pair is missing.
    assert row["n_pairs"] == expected.n == len(METHODS) * len(OPTIONS) * N_QUESTIONS * 2 - 1
    assert (row["difference"], row["ci_low"], row["ci_high"], row["p_value"]) == pytest.approx(
        (expected.mean, expected.ci_low, expected.ci_high, expected.p_value), abs=1e-12)
    # verbalize vs sequence, persona only: the failed verbalize record drops one pair.
    row = next(r for r in written if r["comparison"] == "verbalize vs sequence" and r["model"] == "model-a" and r["steering"] == "persona")
    assert row["n_pairs"] == len(OPTIONS) * N_QUESTIONS * 2 - 1
    assert all(0 < r["p_value"] <= r["p_holm"] <= 1 for r in written)


def test_temperature_table_equals_the_fits(small_report):
    from distalign_data.temperature import fit_temperature
    from distalign_data.temperature import fit_temperature_kfold

    by_id = {row["id"]: row for row in small_report["rows"]}
    written = {(r["model"], r["dataset"], r["steering"]): r for r in table_rows(small_report, "temperature")}
    assert len(written) == len(MODELS) * len(OPTIONS) * len(STEERINGS)
    cell = [r for r in small_report["records"]
            if (r.model, r.dataset, r.steering, r.method) == ("model-b", "nyt_books", "persona", "logprobs")]
    refs = [by_id[r.row_id]["distribution"] for r in cell]
    preds = [align(r.options, r.distribution, by_id[r.row_id]["options"]) for r in cell]
    row = written[("model-b", "nyt_books", "persona")]
    assert row["tau_oracle"] == pytest.approx(fit_temperature(refs, preds).tau, abs=1e-9)
    held = fit_temperature_kfold(refs, preds, n_folds=5, seed=4, groups=[r.question_id for r in cell])
    assert row["tau_heldout_mean"] == pytest.approx(np.mean(held.taus), abs=1e-9)
    assert row["tv_raw"] == pytest.approx(np.mean(total_variation(refs, preds)), abs=1e-12)
    assert row["bounds"] == "(0, 10)" and row["n_rows"] == 2 * N_QUESTIONS


def test_report_writes_every_format_figure_and_index(small_report):
    from tests.test_plots import png_size

    out = small_report["out"]
    files = set(small_report["summary"]["files"])
    for name in ("leaderboard", "ks_gap", "dataset_steering", "humans_vs_models", "parse_failures",
                 "per_group", "follow_rate", "temperature", "significance"):
        assert {f"tables/{name}.{fmt}" for fmt in ("md", "csv", "tex", "json")} <= files
    pngs = sorted(f for f in files if f.endswith(".png"))
    assert "figures/figure4_tv_by_dataset_steering.png" in pngs
    assert "figures/figure6_calibration.png" in pngs
    assert {f"figures/figure5_nyt_likert_{m}.png" for m in METHODS} <= set(pngs)
    # Figure 4: 3 methods (rows) x 2 datasets (columns).
    assert png_size(out / "figures/figure4_tv_by_dataset_steering.png") == (800, 1000)
    index = (out / "index.html").read_text()
    assert index.count("<img ") == len(pngs)
    assert all(f'id="{name}"' in index for name in ("per_group", "temperature", "significance"))
    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == 4 and report["protocol"] == "corrected" and report["duplicates_dropped"] == 0


def test_leaderboard_and_gap_equal_the_metric_api(small_report):
    from distalign_data.statistics import ks_gap

    tvs = independent_tvs(small_report)
    board = {(r["model"], r["method"]): r for r in table_rows(small_report, "leaderboard")}
    for model in MODELS:
        for method in METHODS:
            sets = {}
            for (m, d, s, me, _), tv in tvs.items():  # record order, as the report reads them
                if (m, me) == (model, method) and s in ("persona", "few_shot"):
                    sets.setdefault(d, []).append(tv)
            # Datasets are resampled in name order, each with its rows in record order.
            expected = bootstrap_mean_ci(dict(sorted(sets.items())), seed=4)
            row = board[(model, method)]
            assert row["dataset"] == "opinionqa+nytimes" and row["steering"] == "persona+few_shot"
            assert row["mean"] == pytest.approx(np.mean([np.mean(v) for v in sets.values()]), abs=1e-12)
            assert (row["ci_low"], row["ci_high"], row["n"]) == pytest.approx((expected.ci_low, expected.ci_high, expected.n), abs=1e-12)
    # Baselines: uniform over each row's options, scored on the rows the runs cover.
    by_id = {row["id"]: row for row in small_report["rows"]}
    uniform = board[("baseline", "uniform")]
    means = [np.mean(total_variation([r["distribution"] for r in rows], [np.full(len(r["options"]), 1 / len(r["options"])) for r in rows]))
             for rows in ([r for r in by_id.values() if r["dataset"] == d] for d in OPTIONS)]
    assert uniform["mean"] == pytest.approx(np.mean(means), abs=1e-12)
    gap = {r["model"]: r for r in table_rows(small_report, "ks_gap")}
    seq, verb = {}, {}
    for (m, d, s, me, row_id), tv in tvs.items():
        if m == "model-a" and me == "sequence" and s in ("persona", "few_shot") and (m, d, s, "verbalize", row_id) in tvs:
            seq.setdefault(d, []).append(tv)
            verb.setdefault(d, []).append(tvs[(m, d, s, "verbalize", row_id)])
    expected = ks_gap(dict(sorted(seq.items())), dict(sorted(verb.items())), seed=4)
    assert (gap["model-a"]["mean"], gap["model-a"]["ci_low"], gap["model-a"]["ci_high"]) == pytest.approx(
        (expected.mean, expected.ci_low, expected.ci_high), abs=1e-12)


def test_dataset_steering_table_feeds_figure_4(small_report):
    tvs = independent_tvs(small_report)
    rows = table_rows(small_report, "dataset_steering")
    row = next(r for r in rows if (r["dataset"], r["steering"], r["model"], r["method"]) == ("nytimes", "few_shot", "model-a", "sequence"))
    cell = [tv for (m, d, s, me, _), tv in tvs.items() if (m, d, s, me) == ("model-a", "nyt_books", "few_shot", "sequence")]
    assert row["mean"] == pytest.approx(np.mean(cell), abs=1e-12) and row["n"] == len(cell) == 2 * N_QUESTIONS
    # Every (dataset, steering) of the runs is in the table, plus the pooled persona+few-shot.
    assert {(r["dataset"], r["steering"]) for r in rows if r["model"] == "model-b"} == {
        (d, s) for d in ("opinionqa", "nytimes") for s in ("none", "persona", "few_shot", "persona+few_shot")}


def test_report_command_on_a_coin_run(tmp_path, capsys):
    from distalign_data import cli
    from distalign_data import coin
    from tests.test_coin import PerfectCoinBackend
    from tests.test_plots import png_size

    coin.run_coin(PerfectCoinBackend(), tmp_path / "coin", seed=0, samples=1, progress=False)
    assert cli.main(["report", str(tmp_path / "coin"), "--out", str(tmp_path / "out"), "--format", "csv,json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 6
    rows = json.loads((tmp_path / "out/tables/coin.json").read_text())["rows"]
    assert [(r["method"], r["stated_p"], r["expressed_p"]) for r in rows if r["method"] == "verbalize"] == [
        ("verbalize", p, pytest.approx(p)) for p in coin.STATED_PROBABILITIES]
    assert png_size(tmp_path / "out/figures/figure2_coin.png") == (400, 400)
    assert not (tmp_path / "out/tables/coin.md").exists()


def test_bad_run_directories_are_clear_errors(tmp_path):
    from distalign_data import reports

    with pytest.raises(ValueError, match="has no records.jsonl"):
        reports.build_report([tmp_path / "missing"], tmp_path / "out")
    RecordStore(tmp_path / "odd").append([RunRecord(
        model="m", dataset="tarot_cards", row_id="r/1", question_id="r", group_attribute="", group="",
        method="sequence", steering="none", options=["a"], distribution=[1.0], parse_status="ok")])
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['tarot_cards'\]"):
        reports.build_report([tmp_path / "odd"], tmp_path / "out")
    with pytest.raises(ValueError, match="protocol 'fancy'"):
        reports.build_report([tmp_path / "odd"], tmp_path / "out", protocol="fancy")
