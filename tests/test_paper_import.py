"""The importer of the paper's released outputs and of the human baseline (fixtures written by hand)."""

from __future__ import annotations

import math
import re

import pytest

from distalign_data import cli
from distalign_data.human_baseline import human_records, read_estimates
from distalign_data.paper_import import import_paper_outputs, iter_result_files
from distalign_data.temperature import apply_temperature

from .paper_import_helpers import (
    DEM_PAPER,
    Q,
    QUESTION,
    SURVEY,
    WORKER,
    fixture_rows,
    human_survey_csv,
    write_paper_results,
)


@pytest.fixture()
def imported(tmp_path):
    source = write_paper_results(tmp_path / "upstream")
    store = import_paper_outputs(tmp_path / "run", source=source, rows=fixture_rows())
    return {(r.model, r.method, r.steering, r.row_id): r for r in store.records()}, store


def test_iter_result_files_skips_unscored_groups_and_experiments(tmp_path):
    from collections import Counter

    source = write_paper_results(tmp_path / "upstream")
    skipped = Counter()
    files = list(iter_result_files(source, skipped))
    assert len(files) == 7
    assert skipped == {"opinionqa group RACE/Asian": 1, "globalvalues/model_logprobs/llama3-70b/task3_easy_hard_v1": 1}
    gv = [f for f in files if f.dataset == "global_opinionqa_contentious"][0]
    assert (gv.method, gv.model, gv.steering, gv.attribute, gv.group) == ("sequence", "gpt-4", "persona", "COUNTRY", "0")


def test_sequence_record_keeps_reparse_and_stored_vectors(imported):
    records, _ = imported
    record = records[("gpt-4", "sequence", "persona", f"{Q}/Democrat")]
    # The paper's letters meant the Democrat dict's (alphabetical) options.
    assert record.options == DEM_PAPER
    # "AABCCC": A twice, B once, C three times.
    assert record.distribution == pytest.approx([2 / 6, 1 / 6, 3 / 6])
    assert record.parse_status == "ok"
    assert record.extra["paper_distribution"] == [0.3, 0.2, 0.5]
    assert record.extra["paper_reference"] == [0.3, 0.5, 0.2]
    assert record.raw_response == "AABCCC"
    assert record.backend == "paper-import"


def test_no_steering_output_becomes_one_record_per_group(imported):
    records, _ = imported
    dem = records[("gpt-4", "sequence", "none", f"{Q}/Democrat")]
    rep = records[("gpt-4", "sequence", "none", f"{Q}/Republican")]
    # The Republican record keeps the Democrat prompt's options, not its own shorter list.
    assert dem.options == rep.options == DEM_PAPER
    assert rep.distribution == pytest.approx([1 / 3] * 3)
    assert rep.extra["paper_reference"] == [0.4, 0.6]
    assert dem.extra["paper_reference"] == [0.3, 0.5, 0.2]


def test_verbalized_keys_out_of_order_are_read_by_key(imported):
    records, _ = imported
    record = records[("llama3-70b", "verbalize", "persona", f"{Q}/Democrat")]
    assert record.distribution == pytest.approx([0.3, 0.2, 0.5])
    # The stored vector stays in the upstream's (response) order, as the paper read it.
    assert record.extra["paper_distribution"] == [0.5, 0.3, 0.2]


def test_logprob_and_temperature_scaled_records(imported):
    records, _ = imported
    logprobs = records[("gpt-4", "logprobs", "persona", f"{Q}/Democrat")]
    # Stored letter probabilities 0.5, 0.25, 0: renormalised over the letters, 0.75 covered.
    assert logprobs.distribution == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert logprobs.parse_details["covered_mass"] == pytest.approx(0.75)
    scaled = records[("gpt-4", "temperature_scaled_logprobs", "persona", f"{Q}/Democrat")]
    tau = scaled.extra["tau"]
    assert 0 < tau <= 10 and scaled.extra["tau_bounds"] == [0.0, 10.0]
    # p^(1/tau) renormalised, computed here without the package.
    weights = [(2 / 3) ** (1 / tau), (1 / 3) ** (1 / tau), 0.0]
    assert scaled.distribution == pytest.approx([w / sum(weights) for w in weights])
    assert scaled.extra["paper_distribution"] == [0.4, 0.35, 0.25]
    assert [float(x) for x in apply_temperature([logprobs.distribution], tau)[0]] == pytest.approx(scaled.distribution)


def test_nyt_and_gv_rows_found_by_key_and_position(imported):
    records, _ = imported
    nyt = [r for r in records.values() if r.dataset == "nyt_books"]
    gv = [r for r in records.values() if r.dataset == "global_opinionqa_contentious"]
    assert [r.group for r in nyt] == ["Male"]
    assert nyt[0].distribution == pytest.approx([0.0, 0.25, 0.25, 0.5])
    # File 0.json is the first country of the question's list; prose before the letters is repaired away.
    assert [(r.group, r.parse_status) for r in gv] == [("France", "repaired")]
    assert gv[0].distribution == [0.5, 0.5]


def test_manifest_and_idempotent_reimport(imported, tmp_path):
    records, store = imported
    manifest = store.manifest()
    assert manifest["models"] == ["gpt-4", "llama3-70b"]
    assert manifest["records_per_model"] == {"gpt-4": 7, "llama3-70b": 1}
    assert manifest["skipped"]["opinionqa group RACE/Asian"] == 1
    assert manifest["backend"] == "paper-import"
    assert manifest["seeds"] == {"upstream": None, "heldout_temperature_folds": 0}
    assert manifest["package_version"] and len(manifest["dataset_revision"]) == 40
    source = write_paper_results(tmp_path / "upstream")
    again = import_paper_outputs(store.run_dir, source=source, rows=fixture_rows())
    assert len(again.records()) == len(records)


def test_missing_row_raises_no_error_but_is_counted(tmp_path):
    source = write_paper_results(tmp_path / "upstream")
    rows = fixture_rows()
    rows["opinionqa_subset"] = [r for r in rows["opinionqa_subset"] if r["group"] != "Democrat"]
    store = import_paper_outputs(tmp_path / "run", source=source, rows=rows)
    skipped = store.manifest()["skipped"]
    assert skipped[f"opinionqa_subset: no row for {Q!r} / Democrat"] == 4


def test_import_paper_cli(tmp_path, capsys, monkeypatch):
    import distalign_data.paper_import as paper_import

    source = write_paper_results(tmp_path / "upstream")
    real = paper_import.import_paper_outputs
    monkeypatch.setattr(paper_import, "import_paper_outputs",
                        lambda out, **kw: real(out, **{**kw, "source": source, "rows": fixture_rows()}))
    assert cli.main(["import-paper", "--out", str(tmp_path / "run")]) == 0
    assert "imported 8 records" in capsys.readouterr().out


def test_read_estimates_keeps_complete_blocks_in_file_order():
    estimates, headers = read_estimates([human_survey_csv()])
    assert [block[:3] for block in estimates[1]["Q_NoSteering"]] == [
        [50, 30, 20], [30, 30, 40], [40, 40, 20], [20, 40, 40], [10, 10, 80]]
    assert [block[:3] for block in estimates[1]["Q135"]] == [[0, 60, 40], [0, 80, 20]]
    assert QUESTION in headers[1]


def test_human_records_by_hand():
    rows = fixture_rows()["opinionqa_subset"]
    order = {Q: {"question_text": QUESTION, "MC_options": SURVEY}}
    records = {r.group: r for r in human_records("opinionqa_subset", "persona", [human_survey_csv()], order, rows)}
    dem, rep = records["Democrat"], records["Republican"]
    # First 4 complete Democrat rows: means 35, 35, 30 (percent).
    assert dem.distribution == pytest.approx([0.35, 0.35, 0.30])
    assert dem.parse_details["n_estimates"] == 4
    # Both blocks were shown the Democrat prompt's options.
    assert dem.options == rep.options == DEM_PAPER
    assert rep.distribution == pytest.approx([0.0, 0.7, 0.3])
    # The paper compared slot means with the group's own (shorter) reference by position.
    assert rep.extra["paper_reference"] == pytest.approx([0.4, 0.6])
    assert rep.extra["paper_distribution"] == pytest.approx([0.0, 0.7])
    assert (dem.model, dem.method, dem.steering) == ("humans", "verbalize", "persona")


def test_worker_ids_never_reach_human_records(tmp_path):
    source = write_paper_results(tmp_path / "upstream", humans=True)
    store = import_paper_outputs(tmp_path / "run", source=source, rows=fixture_rows())
    assert store.manifest()["records_per_model"]["humans"] == 2
    text = (tmp_path / "run" / "records.jsonl").read_text() + (tmp_path / "run" / "manifest.json").read_text()
    assert WORKER not in text and "anon-" not in text


def test_human_mapping_mismatch_is_a_clear_error():
    rows = fixture_rows()["opinionqa_subset"]
    order = {Q: {"question_text": "A different question entirely", "MC_options": SURVEY}}
    with pytest.raises(ValueError, match="mapping is broken"):
        human_records("opinionqa_subset", "persona", [human_survey_csv()], order, rows)


@pytest.mark.mirror
def test_mirror_import(paper_run):
    store, _ = paper_run
    manifest = store.manifest()
    assert manifest["models"] == ["anthropic_haiku", "anthropic_opus", "gpt-3.5-turbo-0125", "gpt-4", "llama3-70b",
                                  "humans"]
    # Per model: the API models without log-probs have 2 methods, the others 4.
    assert manifest["records_per_model"]["anthropic_opus"] == 10434
    assert manifest["records_per_model"]["gpt-4"] == 20868
    assert manifest["records_per_model"]["humans"] == 4617
    skipped = manifest["skipped"]
    assert skipped["opinionqa group RACE/Asian"] == 20 and skipped["opinionqa group RACE/Hispanic"] == 20
    assert skipped["globalvalues/model_logprobs/llama3-70b/task3_easy_hard_v1"] == 3
    text = store.path.read_text(encoding="utf-8")
    assert "anon-" not in text


@pytest.mark.mirror
def test_mirror_temperature_refit_avoids_the_nan_artefact(paper_run):
    store, _ = paper_run
    taus = {}
    for record in store.records():
        if record.method == "temperature_scaled_logprobs" and record.extra.get("tau") is not None:
            taus[(record.model, record.dataset, record.steering)] = record.extra["tau"]
    # protocol section 5: the clean fits the paper's NaN objective missed.
    assert taus[("gpt-3.5-turbo-0125", "opinionqa_subset", "persona")] == pytest.approx(2.31, abs=0.01)
    assert taus[("llama3-70b", "global_opinionqa_contentious", "persona")] == pytest.approx(6.94, abs=0.01)
    assert not any(math.isclose(t, 3.8197, abs_tol=1e-3) for t in taus.values())


@pytest.mark.mirror
def test_mirror_no_steering_letters_mean_the_democrat_order(paper_run, mirror_source):
    """Protocol section 2: the no-steering OpinionQA prompt listed the Democrat dict's options, for every group.

    Checked against the upstream files read here directly (not through the
    importer): a group's record maps letter i to the Democrat dict's i-th key,
    and the corrected TV, aligned by option text, equals the one worked out from
    the raw response and the group's own counts.
    """
    import json

    from distalign_data.scoring import score_records

    store, rows = paper_run
    folder = mirror_source / "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100"
    data = {name: json.loads((folder / f"{name}_data.json").read_text()) for name in ("POLPARTY", "SEX")}
    cases = (("RACESURV40_W43", "Republican", "POLPARTY"), ("GAP21Q33_g_W82", "Republican", "POLPARTY"),
             ("GUNRESPNOKIDSC_W26", "Male", "SEX"))
    wanted = {f"{q}/{g}" for q, g, _ in cases}
    records = {r.row_id: r for r in store.records()
               if r.model == "gpt-4" and r.method == "verbalize" and r.steering == "none" and r.row_id in wanted}
    scores = score_records(list(records.values()), rows, "corrected").set_index("row_id")["tv"]
    for question, group, attribute in cases:
        record = records[f"{question}/{group}"]
        democrat_order = list(data["POLPARTY"][question]["Democrat"])
        assert record.options == democrat_order
        # The response is a dict letter -> 'NN%'; read it here with a plain regex.
        stated = {letter: int(value) / 100 for letter, value in re.findall(r"'([A-Z])': '(\d+)%'", record.raw_response)}
        predicted = {democrat_order[ord(letter) - ord("A")]: p for letter, p in stated.items()}
        counts = data[attribute][question][group]
        total = sum(counts.values())
        options = set(predicted) | set(counts)
        expected = 0.5 * sum(abs(predicted.get(o, 0.0) / sum(predicted.values()) - counts.get(o, 0.0) / total)
                             for o in options)
        assert scores[f"{question}/{group}"] == pytest.approx(expected, abs=1e-6)
    # The hand-checked value of one of them (RACESURV40_W43 / Republican, worked out in the review).
    assert scores["RACESURV40_W43/Republican"] == pytest.approx(0.2483, abs=1e-4)
