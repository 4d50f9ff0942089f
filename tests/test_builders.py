"""The three builders on small hand-written fixtures, the row validator, and the mirror's acceptance numbers."""

from __future__ import annotations

import ast
import copy
import csv
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from distalign_data.benchmarks import load_benchmark, load_rows
from distalign_data.builders._common import parse_string_list
from distalign_data.neighbours import select_few_shot
from distalign_data.schema import row_features, validate_row
from distalign_data.sources import CACHE_VARIABLE, resolve_source, write_manifest

from tests.upstream_helpers import (
    GV_COUNTRIES,
    GV_DISTRIBUTIONS,
    GV_QUESTION,
    GV_SIMILAR,
    NYT_BOOKS,
    NYT_LIKERT,
    OQA_EXPECTED_FEW_SHOT,
    POOL,
    YES_NO,
    write_upstream,
)


def _sha_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


@pytest.fixture(scope="module")
def fixture_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream") / "tree"
    return resolve_source(root, manifest=write_upstream(root))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path_factory.getbasetemp() / "cache"))


def _by_id(rows):
    return {row["id"]: row for row in rows}


def test_opinionqa_rows(fixture_source):
    rows = _by_id(load_rows("opinionqa_subset", fixture_source))
    assert len(rows) == 11 and "T2/Male" not in rows  # 2 questions x 6 groups, T2 has no Male answers
    row = rows["T1/Democrat"]
    assert row["options"] == YES_NO and row["paper_options"] == ["No", "Yes"]
    assert row["counts"] == [10.0, 30.0, 0.0] and row["respondents"] == 40.0
    assert row["distribution"] == pytest.approx([0.25, 0.75, 0.0])
    assert row["similar_question_ids"] == list(POOL)  # the upstream list named T1 itself first
    assert [n["question_id"] for n in row["few_shot"]] == OQA_EXPECTED_FEW_SHOT
    agree = row["few_shot"][1]
    assert agree["options"] == ["Agree", "Disagree"] and agree["distribution"] == pytest.approx([0.5, 0.5])
    assert agree["question"] == "Pool question P3?"
    assert rows["T2/Female"]["distribution"] == pytest.approx([0.25, 0.5, 0.25])
    assert rows["T2/Female"]["paper_options"] == ["No", "Refused", "Yes"]
    assert [r["group"] for r in rows.values() if r["question_id"] == "T1"] == [
        "Democrat", "Republican", "Male", "Female", "Black", "White"]


def test_global_opinionqa_rows(fixture_source):
    rows = load_rows("global_opinionqa_contentious", fixture_source)
    question_id = _sha_id("gv", GV_QUESTION)
    assert [row["id"] for row in rows] == [f"{question_id}/{country}" for country in GV_COUNTRIES]
    assert [row["group_position"] for row in rows] == [0, 1, 2, 3]
    assert all(row["options"] == ["Yes", "Don't know", "No"] == row["paper_options"] for row in rows)
    borduria = rows[1]
    assert borduria["distribution"] == pytest.approx([x / 1.002 for x in GV_DISTRIBUTIONS["Borduria"]])
    assert borduria["counts"] is None and borduria["respondents"] is None
    similar = [_sha_id("gv", text) for text in GV_SIMILAR]
    assert borduria["similar_question_ids"] == similar
    # Every candidate has 2 options against 3: all count as most distinct, so rank decides.
    assert [n["question_id"] for n in borduria["few_shot"]] == similar[:5]
    assert borduria["few_shot"][0]["options"] == ["Yes", "No"]
    assert borduria["few_shot"][0]["distribution"] == pytest.approx([0.1, 0.9])


def test_nyt_rows(fixture_source):
    rows = _by_id(load_rows("nyt_books", fixture_source))
    assert len(rows) == 7 * 4
    book = _sha_id("nyt", NYT_BOOKS[0])
    row = rows[f"{book}/Democrat"]
    assert row["options"] == NYT_LIKERT == row["paper_options"]
    assert row["counts"] == [1.0, 1.0, 0.0, 2.0]
    assert row["distribution"] == pytest.approx([0.25, 0.25, 0.0, 0.5])
    # Title and author as the NYT list prints them, matched to the key "Book 1 By Author 1".
    assert (row["title"], row["author"], row["genre"]) == ("BOOK 1", "Author 1", "Fiction")
    assert row["nyt_url"] == "https://www.nytimes.com/books#1" and row["summary"] == "Summary 1."
    # Book m has counts (m, 1, 0, 2): the distance to book 1 grows with m, so books 3-7 are picked.
    assert [n["question_id"] for n in row["few_shot"]] == [_sha_id("nyt", b) for b in NYT_BOOKS[2:]]
    assert row["few_shot"][0]["title"] == "BOOK 3"
    assert rows[f"{book}/Republican"]["counts"] == [2.0, 1.0, 0.0, 2.0]


def test_nyt_annotations(fixture_source):
    ratings = load_rows("nyt_books", fixture_source, config="annotations")
    book1, book2 = _sha_id("nyt", NYT_BOOKS[0]), _sha_id("nyt", NYT_BOOKS[1])
    shared = {"title": "BOOK 1", "author": "Author 1", "question_id": book1}
    assert ratings == [
        {"id": f"{book1}/annotator-1", **shared, "annotator": 1, "rating": NYT_LIKERT[1], "rating_index": 1,
         "groups": ["Democrat", "Female"], "gender": "Female", "race": "Black or African American",
         "party": "Democrat", "income": "$30,000 - $99,999", "age_band": "18-24"},
        {"id": f"{book1}/annotator-2", **shared, "annotator": 2, "rating": NYT_LIKERT[2], "rating_index": 2,
         "groups": ["Republican", "Male"], "gender": "Male", "race": "White or Caucasian American",
         "party": "Republican", "income": "Less than $30,000", "age_band": "65+"},
        # Listed twice upstream with two incomes: income unknown; "Other (please specify)" -> "Other".
        {"id": f"{book1}/annotator-3", **shared, "annotator": 3, "rating": NYT_LIKERT[3], "rating_index": 3,
         "groups": ["Female"], "gender": "Female", "race": "Asian or Asian American",
         "party": "Other", "income": None, "age_band": "35-44"},
        {"id": f"{book2}/annotator-2", "title": "BOOK 2", "author": "Author 2", "question_id": book2,
         "annotator": 2, "rating": NYT_LIKERT[3], "rating_index": 3, "groups": ["Republican", "Male"],
         "gender": "Male", "race": "White or Caucasian American", "party": "Republican",
         "income": "Less than $30,000", "age_band": "65+"},
    ]


def test_load_rows_returns_copies_and_matches_features(fixture_source):
    first = load_rows("nyt_books", fixture_source)
    first[0]["distribution"][0] = 99.0
    assert load_rows("nyt_books", fixture_source)[0]["distribution"][0] == 0.25
    dataset = load_benchmark("global_opinionqa_contentious", source=fixture_source)
    assert dataset.features == row_features("global_opinionqa_contentious")


def test_builder_rejects_an_option_outside_the_survey(tmp_path):
    root = tmp_path / "tree"
    write_upstream(root)
    path = root / "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100/SEX_data.json"
    data = json.loads(path.read_text())
    data["T1"]["Female"]["Maybe"] = 1.0
    path.write_text(json.dumps(data))
    manifest = tmp_path / "m.json"
    write_manifest(root, None, out=manifest)
    with pytest.raises(ValueError, match=r"row 'T1/Female'.*'Maybe'"):
        load_rows("opinionqa_subset", resolve_source(root, manifest=manifest))


def test_a_key_listed_twice_in_info_csv_is_matched_by_text(tmp_path):
    root = tmp_path / "tree"
    write_upstream(root)
    info = root / "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_500/info.csv"
    # A second T1 entry with another text and other options comes first: the text decides.
    lines = info.read_text().splitlines()
    lines.insert(1, '99,T1,Another T1?,"[\'No\', \'Yes\', \'Refused\']","[1.0, 2.0]",W1')
    info.write_text("\n".join(lines) + "\n")
    manifest = tmp_path / "m.json"
    write_manifest(root, None, out=manifest)
    rows = _by_id(load_rows("opinionqa_subset", resolve_source(root, manifest=manifest)))
    assert rows["T1/Democrat"]["options"] == YES_NO
    info.write_text(info.read_text().replace("Do you agree with T1?", "Reworded T1?"))
    manifest = tmp_path / "m2.json"  # a new manifest path: rows are cached per (source, manifest path)
    write_manifest(root, None, out=manifest)
    with pytest.raises(ValueError, match=r"question 'T1': listed more than once .* 0 of the entries"):
        load_rows("opinionqa_subset", resolve_source(root, manifest=manifest))


def test_validate_row_names_row_and_problem(fixture_source):
    good = load_rows("opinionqa_subset", fixture_source)[0]
    validate_row(good, "opinionqa_subset")
    cases = {
        "sums to": lambda r: r.update(distribution=[0.5, 0.2, 0.0]),
        "holds 4 neighbours": lambda r: r["few_shot"].pop(),
        "own question": lambda r: r["few_shot"][0].update(question_id=r["question_id"]),
        "entries for 3 options": lambda r: r.update(distribution=[1.0]),
        "respondents must equal": lambda r: r.update(respondents=1.0),
        "unexpected keys": lambda r: r.update(group_position=0),
    }
    for message, corrupt in cases.items():
        row = copy.deepcopy(good)
        corrupt(row)
        with pytest.raises(ValueError, match=f"row 'T1/Democrat'.*{message}"):
            validate_row(row, "opinionqa_subset")


def test_select_few_shot_needs_five_usable_candidates():
    candidates = [{"question_id": f"q{i}", "options": ["a"], "distribution": [1.0]} for i in range(4)]
    candidates.append({"question_id": "q4", "options": ["a"], "distribution": None})
    with pytest.raises(ValueError, match="'t': only 4 similar questions"):
        select_few_shot("t", ["a"], [1.0], candidates)


def test_parse_string_list_never_evaluates():
    with pytest.raises(ValueError, match="expected a list of strings"):
        parse_string_list("[__import__('os').system('true')]", where="q")
    assert parse_string_list("['a, b', 'c']", where="q") == ["a, b", "c"]


# ---- the mirror: acceptance numbers ------------------------------------------------------------

OQA_POOL = "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_500/"


@pytest.fixture(scope="module")
def mirror_rows(mirror_source):
    return {name: load_rows(name, mirror_source) for name in
            ("opinionqa_subset", "global_opinionqa_contentious", "nyt_books")}


@pytest.mark.mirror
def test_mirror_row_counts_and_shapes(mirror_rows):
    assert {name: len(rows) for name, rows in mirror_rows.items()} == {
        "opinionqa_subset": 599, "global_opinionqa_contentious": 302, "nyt_books": 940}
    for name, rows in mirror_rows.items():
        assert len({row["id"] for row in rows}) == len(rows)
        for row in rows:
            assert len(row["distribution"]) == len(row["options"])
            assert abs(math.fsum(row["distribution"]) - 1) <= 1e-6
            assert len(row["few_shot"]) == 5
            assert len({n["question_id"] for n in row["few_shot"]}) == 5
            assert all(n["question_id"] != row["question_id"] for n in row["few_shot"])
            assert set(n["question_id"] for n in row["few_shot"]) <= set(row["similar_question_ids"])
            assert all(abs(math.fsum(n["distribution"]) - 1) <= 1e-6 for n in row["few_shot"])
    opinionqa = {row["id"] for row in mirror_rows["opinionqa_subset"]}
    assert "FEM2_W29/Male" not in opinionqa and "FEM2_W29/Female" in opinionqa


@pytest.mark.mirror
def test_mirror_neighbours_are_of_the_rows_group(mirror_rows, mirror_source):
    """Each neighbour's distribution is that question's answers from the row's own group."""
    root = Path(mirror_source)
    pool = {a: json.loads((root / f"{OQA_POOL}{a}_data.json").read_text()) for a in ("POLPARTY", "SEX", "RACE")}
    with (root / OQA_POOL / "info.csv").open(newline="") as handle:
        survey = {line["key"]: ast.literal_eval(line["references"]) for line in csv.DictReader(handle)}
    for row in mirror_rows["opinionqa_subset"]:
        for neighbour in row["few_shot"]:
            counts = pool[row["group_attribute"]][neighbour["question_id"]][row["group"]]
            total = sum(counts.values())
            expected = [counts.get(o, 0) / total for o in survey[neighbour["question_id"]]]
            assert neighbour["distribution"] == pytest.approx(expected, abs=1e-7)
    data = json.loads((root / "nytimes/data.json").read_text())
    keys = {_sha_id("nyt", key): key for key in data}
    for row in mirror_rows["nyt_books"]:
        for neighbour in row["few_shot"]:
            counts = data[keys[neighbour["question_id"]]][row["group"]]
            total = sum(counts.values())
            assert neighbour["distribution"] == pytest.approx([counts.get(o, 0) / total for o in NYT_LIKERT], abs=1e-7)
    similarity = json.loads((root / "Global_Values/data/question_similarity.json").read_text())
    questions = json.loads((root / "Global_Values/data/data.json").read_text())
    for row in mirror_rows["global_opinionqa_contentious"]:
        text = next(q for q in questions if _sha_id("gv", q) == row["question_id"])
        assert questions[text]["countries"][row["group_position"]] == row["group"]
        listed = similarity[text][row["group"]]
        by_id = {_sha_id("gv", t): v[0] for t, v in listed.items()}
        assert len(row["similar_question_ids"]) == len(listed) >= 5
        for neighbour in row["few_shot"]:
            probs = by_id[neighbour["question_id"]]
            assert neighbour["distribution"] == pytest.approx([p / sum(probs.values()) for p in probs.values()], abs=1e-7)


@pytest.mark.mirror
def test_mirror_similar_lists_have_ten_where_upstream_has_ten(mirror_rows):
    for name in ("opinionqa_subset", "nyt_books"):
        assert {len(row["similar_question_ids"]) for row in mirror_rows[name]} == {10}
    sizes = Counter(len(row["similar_question_ids"]) for row in mirror_rows["global_opinionqa_contentious"])
    assert sizes[10] == 239 and min(sizes) == 5


@pytest.mark.mirror
def test_mirror_annotations(mirror_source):
    ratings = load_rows("nyt_books", mirror_source, config="annotations")
    assert len(ratings) == 9048
    assert sorted({r["annotator"] for r in ratings}) == list(range(1, 336))
    # Per (book, group, rating) the config counts exactly what the individual file holds.
    individual = json.loads((Path(mirror_source) / "nytimes/individual_annotations/NYTIMES_proportions_ID.json").read_text())
    expected = Counter((_sha_id("nyt", key), group, label) for key, entry in individual.items()
                       for group in ("Democrat", "Republican", "Male", "Female") for label in entry[group].values())
    assert Counter((r["question_id"], group, r["rating"]) for r in ratings for group in r["groups"]) == expected
    assert all(r["rating"] == NYT_LIKERT[r["rating_index"]] for r in ratings)


def _survey_options(root: Path) -> dict[tuple[str, str], list[str]]:
    """(key, question text) -> the options in survey order, read from the 500-question info.csv."""
    with (root / OQA_POOL / "info.csv").open(newline="") as handle:
        return {(line["key"], line["question"]): ast.literal_eval(line["references"]) for line in csv.DictReader(handle)}


@pytest.mark.mirror
def test_mirror_references_match_the_upstream_files(mirror_rows, mirror_source):
    """Every row's options, counts, distribution and paper_options, recomputed from the raw files."""
    root = Path(mirror_source)
    survey = _survey_options(root)
    subset_dir = "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100/"
    subset = {a: json.loads((root / f"{subset_dir}{a}_data.json").read_text()) for a in ("POLPARTY", "SEX", "RACE")}
    rows = _by_id(mirror_rows["opinionqa_subset"])
    expected_ids = set()
    for attribute, questions in subset.items():
        for question_id, entry in questions.items():
            options = survey[(question_id, entry["question_text"])]
            for group, counts in entry.items():
                if group in ("MC_options", "question_text") or not counts or group not in {
                        "Democrat", "Republican", "Male", "Female", "Black", "White"}:
                    continue
                row = rows[f"{question_id}/{group}"]
                expected_ids.add(row["id"])
                assert (row["question"], row["group_attribute"], row["options"]) == (
                    entry["question_text"], attribute, options)
                assert row["paper_options"] == list(counts)  # the group dict's own (alphabetical) order
                assert row["counts"] == [counts.get(option, 0.0) for option in options]
                total = sum(counts.values())
                assert row["respondents"] == pytest.approx(total)
                assert row["distribution"] == pytest.approx([counts.get(o, 0.0) / total for o in options], abs=1e-7)
    assert expected_ids == set(rows)
    # A comma inside an option text stays one option; "Refused" keeps its place at the end.
    assert rows["GOVPRIORITYc_W54/Republican"]["options"] == [
        "A top priority", "Important, but lower priority", "Not too important", "Should not be done", "Refused"]
    assert rows["GOVPRIORITYc_W54/Republican"]["counts"] == [241.0, 719.0, 556.0, 251.0, 19.0]
    # The card's numbers for IDIMPORT_W43 (asked about the respondent's own race).
    assert rows["IDIMPORT_W43/Black"]["question"].startswith("How important is being Asian")
    assert [round(rows[f"IDIMPORT_W43/{g}"]["distribution"][0], 2) for g in ("Black", "White")] == [0.58, 0.05]

    questions = json.loads((root / "Global_Values/data/data.json").read_text())
    rows = _by_id(mirror_rows["global_opinionqa_contentious"])
    expected_ids = set()
    for text, entry in questions.items():
        options = ast.literal_eval(entry["MC_options"])
        for position, country in enumerate(entry["countries"]):
            row = rows[f"{_sha_id('gv', text)}/{country}"]
            expected_ids.add(row["id"])
            assert (row["question"], row["options"], row["paper_options"]) == (text, options, options)
            assert row["group_position"] == position
            stored = entry[country]
            assert row["distribution"] == pytest.approx([p / sum(stored) for p in stored], abs=1e-7)
    assert expected_ids == set(rows)

    books = json.loads((root / "nytimes/data.json").read_text())
    rows = mirror_rows["nyt_books"]
    assert {row["id"] for row in rows} == {f"{_sha_id('nyt', key)}/{group}" for key in books
                                          for group in ("Democrat", "Republican", "Male", "Female")}
    keys = {_sha_id("nyt", key): key for key in books}
    for row in rows:
        book = books[keys[row["question_id"]]]
        assert row["options"] == NYT_LIKERT == book["MC_options"]
        assert row["counts"] == [book[row["group"]].get(option, 0) for option in NYT_LIKERT]
        assert (row["genre"], row["summary"]) == (book["genre"], book["summary"])


def _most_distinct(target: tuple[list, list], candidates: list[tuple[str, list, list]]) -> list[str]:
    """The few-shot rule written out on its own: the 5 largest distances, rank breaking ties."""
    def distance(options, probs):
        if len(options) != len(target[0]):
            return 1.0
        ours, theirs = dict(zip(*target)), dict(zip(options, probs))
        return round(sum(abs(ours.get(o, 0.0) - theirs.get(o, 0.0)) for o in set(ours) | set(theirs)) / 2, 9)

    ranked = sorted(range(len(candidates)), key=lambda i: (-distance(*candidates[i][1:]), i))
    return [candidates[i][0] for i in sorted(ranked[:5])]


@pytest.mark.mirror
def test_mirror_few_shot_follow_the_rule(mirror_rows, mirror_source):
    """Recompute every row's neighbours from the raw files (float64, as the builders see them)."""
    root = Path(mirror_source)
    survey = _survey_options(root)
    pool = {a: json.loads((root / f"{OQA_POOL}{a}_data.json").read_text()) for a in ("POLPARTY", "SEX", "RACE")}
    for row in mirror_rows["opinionqa_subset"]:
        candidates = []
        for question_id in row["similar_question_ids"]:
            entry = pool[row["group_attribute"]].get(question_id, {})
            counts = entry.get(row["group"]) or {}
            if counts:
                options = survey[(question_id, entry["question_text"])]
                total = math.fsum(counts.values())
                candidates.append((question_id, options, [counts.get(o, 0.0) / total for o in options]))
        target = (row["options"], [c / math.fsum(row["counts"]) for c in row["counts"]])
        assert [n["question_id"] for n in row["few_shot"]] == _most_distinct(target, candidates), row["id"]

    questions = json.loads((root / "Global_Values/data/data.json").read_text())
    similarity = json.loads((root / "Global_Values/data/question_similarity.json").read_text())
    texts = {_sha_id("gv", text): text for text in questions}
    for row in mirror_rows["global_opinionqa_contentious"]:
        text = texts[row["question_id"]]
        stored = questions[text][row["group"]]
        candidates = [(_sha_id("gv", other), list(v[0]), [p / math.fsum(v[0].values()) for p in v[0].values()])
                      for other, v in similarity[text][row["group"]].items() if other != text]
        target = (row["options"], [p / math.fsum(stored) for p in stored])
        assert [n["question_id"] for n in row["few_shot"]] == _most_distinct(target, candidates), row["id"]

    books = json.loads((root / "nytimes/data.json").read_text())
    keys = {_sha_id("nyt", key): key for key in books}
    for row in mirror_rows["nyt_books"]:
        candidates = []
        for question_id in row["similar_question_ids"]:
            counts = books[keys[question_id]][row["group"]]
            total = math.fsum(counts.values())
            candidates.append((question_id, NYT_LIKERT, [counts.get(o, 0) / total for o in NYT_LIKERT]))
        target = (row["options"], [c / math.fsum(row["counts"]) for c in row["counts"]])
        assert [n["question_id"] for n in row["few_shot"]] == _most_distinct(target, candidates), row["id"]
