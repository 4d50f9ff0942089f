"""Small upstream-format fixtures for the source, builder and Hub tests.

``write_upstream(root)`` writes a handful of questions in the upstream repository's
own file formats (the files the three builders read) and a manifest for them; the
values are chosen so that the expected rows can be worked out by hand (see the
comments and the tests).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from distalign_data.sources import sanitise_annotations_json, sanitise_csv, write_manifest

OQA_100 = "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100/"
OQA_500 = "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_500/"
OQA_GROUPS = {"POLPARTY": ("Democrat", "Republican"), "SEX": ("Male", "Female"), "RACE": ("Black", "White")}
YES_NO = ["Yes", "No", "Refused"]
# Pool questions: a group dict (alphabetical, zero options omitted) and the options in survey order.
# Against the target T1 (Yes 0.25, No 0.75) the distinctness is:
#   P1 0.75, P2 0, P3 1 (other option count), P4 0.25, P5 skipped (no answers),
#   P6 1 (disjoint), P7 0.25, P8 0.25  -> chosen: P3, P6, P1, then P4 and P7 (ties to rank).
POOL = {
    "P1": (YES_NO, {"Yes": 4.0}),
    "P2": (YES_NO, {"No": 3.0, "Yes": 1.0}),
    "P3": (["Agree", "Disagree"], {"Agree": 2.0, "Disagree": 2.0}),
    "P4": (YES_NO, {"No": 7.0}),
    "P5": (YES_NO, {}),
    "P6": (YES_NO, {"Refused": 1.0}),
    "P7": (YES_NO, {"No": 5.0, "Yes": 5.0}),
    "P8": (YES_NO, {"No": 1.0, "Yes": 1.0}),
}
OQA_EXPECTED_FEW_SHOT = ["P1", "P3", "P4", "P6", "P7"]
OQA_TARGETS = {
    "T1": ("Do you agree with T1?", {"No": 30.0, "Yes": 10.0}),
    # Asked of women only: no Male row.
    "T2": ("Do you agree with T2?", {"No": 2.0, "Refused": 1.0, "Yes": 1.0}),
}

GV_QUESTION = "Is T a good idea?"
GV_OPTIONS_LITERAL = "['Yes', \"Don't know\", 'No']"
GV_COUNTRIES = ["Aland", "Borduria", "Carpathia", "Dorsalia"]
# Borduria's list sums to 1.002, as some upstream lists do: it is renormalised.
GV_DISTRIBUTIONS = {"Aland": [0.5, 0.25, 0.25], "Borduria": [0.2, 0.3, 0.502], "Carpathia": [1.0, 0.0, 0.0],
                    "Dorsalia": [0.0, 0.0, 1.0]}
GV_SIMILAR = {f"Similar question {i}?": {"Yes": 0.1 * i, "No": 1 - 0.1 * i} for i in range(1, 8)}

NYT_LIKERT = ["1: Very unlikely", "2: Somewhat unlikely", "3: Somewhat likely", "4: Very likely"]
NYT_BOOKS = [f"Book {n} By Author {n}" for n in range(1, 8)]
NYT_GROUPS = ("Democrat", "Republican", "Male", "Female")
WORKERS = ["WORKER1", "WORKER2", "WORKER3"]
# (worker, gender, race, party, income, age); WORKER3 appears twice with different incomes.
DEMOGRAPHICS = [
    ("WORKER1", "Female", "Black or African American", "Democrat", "$30,000 - $99,999", "23"),
    ("WORKER2", "Male", "White or Caucasian American", "Republican", "Less than $30,000", "67"),
    ("WORKER3", "Female", "Asian or Asian American", "Other (please specify)", "$100,000 or more", "40"),
    ("WORKER3", "Female", "Asian or Asian American", "Other (please specify)", "Less than $30,000", "40"),
]


def _write(root: Path, relpath: str, data: bytes | str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def nyt_counts(book: int, group: str) -> dict[str, int]:
    """Book n, group g: counts n, 1, 0, 2 (third label absent) for Democrat, shifted per group."""
    shift = NYT_GROUPS.index(group)
    return {NYT_LIKERT[0]: book + shift, NYT_LIKERT[1]: 1, NYT_LIKERT[3]: 2}


def _ratings(workers: list[str]) -> dict:
    """Book 1 rated by the three workers, book 2 by the second only (a dict in the upstream shape)."""
    ratings = {}
    for number, book in enumerate(NYT_BOOKS[:2], start=1):
        entry = {"MC_options": [1, 2, 3, 4], "genre": "Fiction", "summary": f"Summary {number}."}
        for group in NYT_GROUPS:
            entry[group] = {}
        raters = workers if number == 1 else workers[1:2]
        for worker in raters:
            demographics = next(d for d in DEMOGRAPHICS if d[0] == WORKERS[workers.index(worker)])
            label = NYT_LIKERT[(workers.index(worker) + number) % 4]
            party = demographics[3]
            if party in ("Democrat", "Republican"):
                entry[party][worker] = label
            if demographics[1] in ("Male", "Female"):
                entry[demographics[1]][worker] = label
        ratings[book] = entry
    return ratings


def original_annotation_files() -> dict[str, bytes]:
    """The NYT annotation files as upstream has them: raw worker IDs (and a Windows-style CSV)."""
    demographics = _csv([["", "QDem_Gend", "QDem_Race", "Q_DemRepub", "QDem_Income", "Q84", "QDem_Age"]]
                        + [[str(i), d[1], d[2], d[3], d[4], d[0], d[5]] for i, d in enumerate(DEMOGRAPHICS)])
    return {
        "nytimes/individual_annotations/NYTIMES_proportions_ID.json":
            json.dumps(_ratings(WORKERS), indent=4).encode("utf-8"),
        "nytimes/individual_annotations/nytimes_annotator_demographics.csv":
            b"\xef\xbb\xbf" + demographics.replace("\n", "\r\n").encode("utf-8"),
    }


def write_upstream(root: Path, *, originals: bool = False) -> Path:
    """Write the fixture upstream tree under ``root``; return the path of its manifest.

    With ``originals`` the two annotation files hold raw worker IDs and the manifest
    lists their pseudonymised hashes as the mirror's and the raw ones as upstream's.
    """
    for attribute, groups in OQA_GROUPS.items():
        subset = {}
        for question_id, (text, counts) in OQA_TARGETS.items():
            subset[question_id] = {"MC_options": ["Yes", "No", "Refused"], "question_text": text}
            for group in groups:
                subset[question_id][group] = {} if (question_id, group) == ("T2", "Male") else counts
        pool = {question_id: dict(entry) for question_id, entry in subset.items()}
        for question_id, (_, counts) in POOL.items():
            pool[question_id] = {"MC_options": [], "question_text": f"Pool question {question_id}?"}
            pool[question_id].update({group: counts for group in groups})
        _write(root, f"{OQA_100}{attribute}_data.json", json.dumps(subset))
        _write(root, f"{OQA_500}{attribute}_data.json", json.dumps(pool))
    info = [["", "key", "question", "references", "option_ordinal", "survey"]]
    for question_id, (options, _) in {**{q: (YES_NO, None) for q in OQA_TARGETS}, **POOL}.items():
        text = OQA_TARGETS[question_id][0] if question_id in OQA_TARGETS else f"Pool question {question_id}?"
        info.append([str(len(info)), question_id, text, repr(options), "[1.0, 2.0]", "W1"])
    _write(root, OQA_500 + "info.csv", _csv(info))
    # T1 lists itself first: the builder must drop it.
    similar = {"T1": ["T1", *POOL], "T2": list(POOL)}
    _write(root, OQA_100 + "question_similarity_top10.json", json.dumps(similar))

    gv_entry = {"MC_options": GV_OPTIONS_LITERAL, "countries": GV_COUNTRIES, **GV_DISTRIBUTIONS}
    _write(root, "Global_Values/data/data.json", json.dumps({GV_QUESTION: gv_entry}))
    gv_similar = {country: {text: [dict(probs)] for text, probs in GV_SIMILAR.items()} for country in GV_COUNTRIES}
    _write(root, "Global_Values/data/question_similarity.json", json.dumps({GV_QUESTION: gv_similar}))

    books = {}
    for number, book in enumerate(NYT_BOOKS, start=1):
        books[book] = {"MC_options": NYT_LIKERT, "genre": "Fiction", "summary": f"Summary {number}."}
        books[book].update({group: nyt_counts(number, group) for group in NYT_GROUPS})
    _write(root, "nytimes/data.json", json.dumps(books))
    links = [["Title and Author", "Links"]] + [
        [f"BOOK {n} by Author {n}", f"https://www.nytimes.com/books#{n}"] for n in range(1, 8)
    ]
    _write(root, "nytimes/NYTimes_TextData.csv", _csv(links))
    _write(root, "nytimes/question_similarity_top10.json",
           json.dumps({book: [other for other in NYT_BOOKS if other != book] for book in NYT_BOOKS}))

    originals_by_path = original_annotation_files()
    upstream_hashes = {}
    for relpath, raw in originals_by_path.items():
        sanitised = sanitise_annotations_json(raw) if relpath.endswith(".json") else sanitise_csv(raw)
        _write(root, relpath, sanitised)
        if originals:
            upstream_hashes[relpath] = raw
    manifest = root.parent / f"{root.name}-manifest.json"
    write_manifest(root, None, out=manifest)
    if originals:
        entries = json.loads(manifest.read_text())
        for relpath, raw in upstream_hashes.items():
            entries["files"][relpath]["upstream_sha256"] = hashlib.sha256(raw).hexdigest()
            _write(root, relpath, raw)
        manifest.write_text(json.dumps(entries))
    return manifest
