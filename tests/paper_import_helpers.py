"""A tiny upstream tree of the paper's result files (and one human survey), plus matching rows.

Every value is chosen so that the expected records and scores can be worked out by
hand; the tests spell the arithmetic out.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from distalign_data.schema import gv_question_id, nyt_question_id
from distalign_data.sources import resolve_source, write_manifest

OQA = "results/opinionqa/{method}/{model}/{task}/Pew_American_Trends_Panel_disagreement_100/{attr}/{group}.json"
Q = "Q1_W1"
QUESTION = "How much priority should reducing noise get?"
SURVEY = ["Top priority", "Some priority", "No priority"]
# Group dicts are alphabetical and omit zero counts: the paper's letters.
DEM_PAPER = ["No priority", "Some priority", "Top priority"]
REP_PAPER = ["Some priority", "Top priority"]
DEM = [0.2, 0.5, 0.3]  # survey order
REP = [0.6, 0.4, 0.0]
BOOK = "Some Book By An Author"
LIKERT = ["1: Very unlikely", "2: Somewhat unlikely", "3: Somewhat likely", "4: Very likely"]
GV_TEXT = "Is it good?"
GV_OPTIONS = ["Good", "Bad"]
GV_COUNTRIES = {"France": [0.9, 0.1], "Chile": [0.5, 0.5], "Peru": [0.0, 1.0]}
WORKER = "anon-0123456789ab"


def _row(dataset, question_id, question, options, distribution, attribute, group, paper_options, **more):
    row = {"id": f"{question_id}/{group}", "dataset": dataset, "question_id": question_id, "question": question,
           "options": options, "distribution": distribution, "group_attribute": attribute, "group": group,
           "paper_options": paper_options}
    row.update(more)
    return row


def fixture_rows() -> dict[str, list[dict]]:
    nyt = nyt_question_id(BOOK)
    gv = gv_question_id(GV_TEXT)
    return {
        "opinionqa_subset": [
            _row("opinionqa_subset", Q, QUESTION, SURVEY, DEM, "POLPARTY", "Democrat", DEM_PAPER),
            _row("opinionqa_subset", Q, QUESTION, SURVEY, REP, "POLPARTY", "Republican", REP_PAPER),
        ],
        "nyt_books": [_row("nyt_books", nyt, "How likely?", LIKERT, [0.1, 0.2, 0.3, 0.4], "SEX", "Male", LIKERT)],
        "global_opinionqa_contentious": [
            _row("global_opinionqa_contentious", gv, GV_TEXT, GV_OPTIONS, dist, "COUNTRY", country, GV_OPTIONS,
                 group_position=position)
            for position, (country, dist) in enumerate(GV_COUNTRIES.items())
        ],
    }


def _entry(response, stored, expected=None, *, actual=None, **references):
    entry = {"actual_results": {k: [v] for k, v in (actual or stored).items()}, "avg_actual_results": stored,
             "std_actual_results": {k: 0.0 for k in stored}, "response": [response]}
    if expected is not None:
        entry["expected_results"] = expected
    entry.update(references)
    return entry


PAPER_REF_DEM = {"A": 0.3, "B": 0.5, "C": 0.2}  # Democrat reference in the paper's letter order

RESULT_FILES = {
    # Sequence, persona: re-parse "AABCCC" -> No 2/6, Some 1/6, Top 3/6; the stored vector differs on purpose.
    OQA.format(method="sequence", model="gpt-4", task="task1", attr="POLPARTY", group="Democrat"): {
        Q: _entry("AABCCC", {"A": 0.3, "B": 0.2, "C": 0.5}, PAPER_REF_DEM)},
    # Sequence, no steering: one output, scored against both groups (Republican's stored reference is shorter).
    OQA.format(method="sequence", model="gpt-4", task="task0", attr="NONE", group="Democrat"): {
        Q: _entry("ABC", {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, None,
                  expected_results_NONE_Democrat=PAPER_REF_DEM, expected_results_POLPARTY_Democrat=PAPER_REF_DEM,
                  expected_results_POLPARTY_Republican={"A": 0.4, "B": 0.6})},
    # Verbalized in response order; the upstream stored the values in that order (read by position).
    OQA.format(method="express_distribution", model="llama3-70b", task="task1", attr="POLPARTY", group="Democrat"): {
        Q: _entry("{'C': '50%', 'A': '30%', 'B': '20%'}", {"C": 0.5, "A": 0.3, "B": 0.2}, PAPER_REF_DEM)},
    OQA.format(method="model_logprobs", model="gpt-4", task="task1", attr="POLPARTY", group="Democrat"): {
        Q: _entry("A", {"A": 0.5, "B": 0.25, "C": 0.0}, PAPER_REF_DEM)},
    OQA.format(method="rescaled_model_logprobs", model="gpt-4", task="task1", attr="POLPARTY", group="Democrat"): {
        Q: _entry("A", {"A": 0.4, "B": 0.35, "C": 0.25}, PAPER_REF_DEM, actual={"A": 0.5, "B": 0.25, "C": 0.0})},
    # Never scored in the paper: skipped.
    OQA.format(method="sequence", model="gpt-4", task="task1", attr="RACE", group="Asian"): {
        Q: _entry("A", {"A": 1.0}, {"A": 1.0})},
    "results/nytimes/sequence/gpt-4/task1/SEX/Male.json": {
        BOOK: _entry("DDCB", {"A": 0.0, "B": 0.25, "C": 0.25, "D": 0.5},
                     {"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4})},
    "results/globalvalues/sequence/gpt-4/task1/globalvalues/0.json": {
        GV_TEXT: _entry("Here you go: A B", {"A": 0.5, "B": 0.5}, {"A": 0.9, "B": 0.1})},
    "results/globalvalues/model_logprobs/llama3-70b/task3_easy_hard_v1/globalvalues/0.json": {
        GV_TEXT: _entry("A", {"A": 1.0, "B": 0.0}, {"A": 0.9, "B": 0.1})},
}

HUMAN_PERSONA = "results/human_annotations/Distributional_Alignment_Persona_Steering_May 21, 2024_19.06.csv"


def human_survey_csv() -> str:
    """A persona export for the one OpinionQA question: Democrat (Q_NoSteering) and Republican (Q135) blocks.

    Democrat complete rows, in order: (50,30,20), (30,30,40), (40,40,20), (20,40,40), (10,10,80);
    the first 4 count: means 35, 35, 30 -> [0.35, 0.35, 0.30] over No / Some / Top priority.
    Republican: one incomplete row, then (0,60,40) and (0,80,20): means 0, 70, 30.
    """
    slots = [f"1_Q_NoSteering_{j}" for j in range(1, 8)] + [f"1_Q135_{j}" for j in range(1, 8)]
    tags = ["Q84", "Finished", "1_Q138"] + slots
    headers = ["Worker id", "Finished", f"Question: {QUESTION}<br>A. No priority<br>B. Some priority<br>C. Top priority"]
    headers += [f"estimate - {chr(64 + j)}" for j in range(1, 8)] * 2
    import_ids = ["{}"] * len(tags)
    dem = [(50, 30, 20), (30, 30, 40), None, (40, 40, 20), (20, 40, 40), (10, 10, 80)]
    rep = [None, (0, 60, 40), (0, 80, 20), None, None, None]
    lines = [tags, headers, import_ids]
    for d, r in zip(dem, rep):
        block_d = [str(v) for v in d] + ["0"] * 4 if d else ["", "5", "", "", "", "", ""]
        block_r = [str(v) for v in r] + ["0"] * 4 if r else [""] * 7
        lines.append([WORKER, "True", "B"] + block_d + block_r)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    return out.getvalue()


def write_paper_results(root: Path, *, humans: bool = False):
    """Write the fixture tree under ``root``; return an UpstreamSource for it (own manifest)."""
    files = dict(RESULT_FILES)
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")
    if humans:
        path = root / HUMAN_PERSONA
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(human_survey_csv(), encoding="utf-8")
        order = root / "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100/POLPARTY_data.json"
        order.parent.mkdir(parents=True, exist_ok=True)
        order.write_text(json.dumps({Q: {"question_text": QUESTION, "MC_options": SURVEY}}), encoding="utf-8")
    manifest = root.parent / f"{root.name}-manifest.json"
    write_manifest(root, None, out=manifest)
    return resolve_source(root, manifest=manifest)


_MIRROR_RUN: dict = {}


def mirror_paper_run(mirror_source):
    """(RecordStore, rows) of the mirror's paper import, imported once per test session.

    The import goes to ``distalign reproduce``'s own cache, so the reproduce tests
    reuse it instead of importing again.
    """
    from distalign_data.benchmarks import load_rows
    from distalign_data.names import DATASETS
    from distalign_data.records import RecordStore
    from distalign_data.reproduce import cached_import

    key = str(mirror_source)
    if key not in _MIRROR_RUN:
        rows = {dataset: load_rows(dataset, source=mirror_source) for dataset in DATASETS}
        _MIRROR_RUN[key] = (RecordStore(cached_import(mirror_source, rows=rows)), rows)
    return _MIRROR_RUN[key]


@pytest.fixture()
def paper_run(mirror_source):
    return mirror_paper_run(mirror_source)
