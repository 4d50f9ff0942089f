"""The crowd-sourced human baseline (the paper's Table 2) as run records of model ``humans``.

The paper asked crowd workers to estimate a group's answer distribution, in
Qualtrics surveys whose exports are in ``results/human_annotations/``. Layout of
an export, as reverse-engineered from the files (protocol notes, section 8b):

* Row 1 holds the column tags, rows 2 and 3 are headers (question text, import
  ids); every later row is one worker's response, used in file order.
* Questions: the integer prefixes ``n`` of the ``<n>_Q_NoSteering_1`` columns,
  sorted, map in order onto the question keys of OpinionQA's
  ``POLPARTY_data.json`` or NYT's ``data.json``. Each file's own-answer column
  ``<n>_Q138`` (no suffix) shows the question (or the book) in its header; the
  importer checks every mapping against it.
* Estimates: ``<n>_<tag>_<j>`` holds the percentage for option slot ``j``
  (A, B, ... in the prompt's order: for OpinionQA the Democrat dict's options,
  as in the no-steering model prompts; for NYT the four Likert labels). Tags:
  Democrat ``Q_NoSteering`` (its header still says "Americans"), Republican
  ``Q135``, Male ``Q136``, Female ``Q137``, Black ``Q138``, White ``Q139``. In the
  no-steering files only ``Q_NoSteering`` exists; that one estimate is scored
  against every group, as for the models.
* Estimate per (question, group): the rows whose block of slots is completely
  filled, the first 4 of them in file order, averaged slot by slot, × 0.01.

Only those estimate columns are read: worker ids (``Q84``, ``workerId``) and
every other personal column stay out of the records. A record keeps the
package's view (``distribution`` over the prompt's options, renormalised) and
the paper's (``extra``: the slot means and the group's reference, position by
position, as the upstream compared them).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from distalign_data.records import RecordStore, RunRecord, row_identity

HUMAN_MODEL = "humans"
HUMAN_METHOD = "verbalize"
HUMAN_BACKEND = "crowd-survey"
ANNOTATIONS = "results/human_annotations/"
# Survey exports per (dataset, steering), in the order their rows are read.
# The July 2 NYT persona export is an earlier snapshot of the July 3 one.
SURVEY_FILES = {
    ("opinionqa_subset", "none"): ("Distributional_Alignment_No_Steering_May 21, 2024_18.01.csv",),
    ("opinionqa_subset", "persona"): ("Distributional_Alignment_Persona_Steering_May 21, 2024_19.06.csv",),
    ("opinionqa_subset", "few_shot"): ("Distributional_Alignment_FewShot_Steering_May 21, 2024_18.00.csv",),
    ("nyt_books", "none"): (
        "Distributional_Alignment_No_Steering - NYT_July 1, 2024_12.41.csv",
        "Distributional_Alignment_No_Steering - NYT - V2_July 2, 2024_18.52.csv",
    ),
    ("nyt_books", "persona"): ("Distributional_Alignment_Persona_Steering - NYT_July 3, 2024_10.32.csv",),
    ("nyt_books", "few_shot"): ("Distributional_Alignment_FewShot_Steering - NYT_July 17, 2024_10.52.csv",),
}
QUESTION_ORDER_FILES = {
    "opinionqa_subset": "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100/POLPARTY_data.json",
    "nyt_books": "nytimes/data.json",
}
GROUP_TAGS = {
    "Q_NoSteering": "Democrat",
    "Q135": "Republican",
    "Q136": "Male",
    "Q137": "Female",
    "Q138": "Black",
    "Q139": "White",
}
NO_STEERING_TAG = "Q_NoSteering"
OWN_ANSWER_TAG = "Q138"
ESTIMATES_PER_CELL = 4
_TAG_ROW, _HEADER_ROW, _FIRST_DATA_ROW = 0, 1, 3
_ESTIMATE_COLUMN = re.compile(r"^(\d+)_(Q_NoSteering|Q13[5-9])_(\d+)$")


def read_estimates(texts: list[str]) -> tuple[dict[int, dict[str, list[list[float]]]], dict[int, str]]:
    """Complete estimate blocks of one or more exports of the same survey, read in order.

    Returns ``(estimates, headers)``: ``estimates[n][tag]`` lists the filled
    blocks (percentages by slot) in file order; ``headers[n]`` is the header
    text of the own-answer column ``<n>_Q138``.
    """
    estimates: dict[int, dict[str, list[list[float]]]] = {}
    headers: dict[int, str] = {}
    for text in texts:
        table = list(csv.reader(io.StringIO(text)))
        if len(table) < _FIRST_DATA_ROW:
            raise ValueError("survey export has fewer than its 3 header rows")
        tags, header_texts = table[_TAG_ROW], table[_HEADER_ROW]
        blocks: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for column, tag in enumerate(tags):
            match = _ESTIMATE_COLUMN.match(tag)
            if match:
                blocks.setdefault((int(match.group(1)), match.group(2)), []).append((int(match.group(3)), column))
            elif re.fullmatch(rf"\d+_{OWN_ANSWER_TAG}", tag):
                headers[int(tag.split("_")[0])] = header_texts[column]
        for (question, tag), slots in blocks.items():
            columns = [column for _, column in sorted(slots)]
            filled = estimates.setdefault(question, {}).setdefault(tag, [])
            for line in table[_FIRST_DATA_ROW:]:
                cells = [line[c].strip() if c < len(line) else "" for c in columns]
                if all(cells):
                    filled.append([float(cell) for cell in cells])
    return estimates, headers


def _check_mapping(dataset: str, number: int, key: str, entry: dict[str, Any], header: str | None) -> None:
    expected = key if dataset == "nyt_books" else " ".join(entry["question_text"].split())[:40]
    if header is None or expected.casefold() not in " ".join(header.split()).casefold():
        raise ValueError(
            f"human survey question {number}: its own-answer header does not show {expected!r}; "
            "the column-to-question mapping is broken"
        )


def human_records(dataset: str, steering: str, texts: list[str], question_order: dict[str, Any],
                  rows: list[dict[str, Any]]) -> list[RunRecord]:
    """Run records of the human estimates of one survey (``texts``: its exports in order)."""
    from distalign_data.distributions import align
    from distalign_data.schema import nyt_question_id

    estimates, headers = read_estimates(texts)
    numbers = sorted(n for n, tags in estimates.items() if NO_STEERING_TAG in tags)
    keys = list(question_order)
    if len(numbers) != len(keys):
        raise ValueError(f"human survey {dataset}/{steering}: {len(numbers)} questions, expected {len(keys)}")
    by_question: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_question.setdefault(row["question_id"], []).append(row)
    records = []
    for number, key in zip(numbers, keys):
        _check_mapping(dataset, number, key, question_order[key], headers.get(number))
        question_rows = by_question.get(nyt_question_id(key) if dataset == "nyt_books" else key, [])
        prompt_row = next((r for r in question_rows if r["group"] == "Democrat"), None)
        for row in question_rows:
            tag = NO_STEERING_TAG if steering == "none" else next(
                (t for t, g in GROUP_TAGS.items() if g == row["group"]), None)
            if tag is None:
                continue
            # Every human prompt listed the Democrat dict's options (OpinionQA); NYT's are fixed.
            options = (prompt_row or row)["paper_options"]
            blocks = estimates[number].get(tag, [])[:ESTIMATES_PER_CELL]
            records.append(_record(dataset, steering, row, options, blocks, align))
    return records


def _record(dataset, steering, row, options, blocks, align) -> RunRecord:
    reference = align(row["options"], row["distribution"], row["paper_options"], drop_extra=True).tolist()
    if not blocks:
        distribution, status, reason, slots = None, "failed", "no complete estimate", []
        details: dict[str, Any] = {"n_estimates": 0}
    else:
        slots = [sum(block[j] for block in blocks) / len(blocks) * 0.01 for j in range(len(blocks[0]))]
        shown = slots[: len(options)]
        total = sum(shown)
        details = {"n_estimates": len(blocks), "raw_sum": total, "mass_beyond_options": sum(slots[len(options):])}
        if total <= 0:
            distribution, status, reason = None, "failed", "estimates put no mass on the shown options"
        else:
            distribution, status, reason = [s / total for s in shown], "ok", ""
    return RunRecord(
        model=HUMAN_MODEL,
        **row_identity(row),
        method=HUMAN_METHOD,
        steering=steering,
        options=list(options),
        distribution=distribution,
        parse_status=status,
        parse_reason=reason,
        parse_details=details,
        backend=HUMAN_BACKEND,
        sampling={"estimates_per_cell": ESTIMATES_PER_CELL},
        # The upstream compared slot means and the group's reference position by position,
        # over the reference's length.
        extra={"paper_distribution": slots[: len(reference)], "paper_reference": reference},
    )


def import_human_baseline(store: RecordStore, *, source=None, rows: dict[str, list[dict[str, Any]]]) -> int:
    """Append the human records of every survey to ``store``; returns how many records there are."""
    from distalign_data.sources import resolve_source

    upstream = resolve_source(source)
    available = set(upstream.files(ANNOTATIONS))
    records = []
    for (dataset, steering), names in SURVEY_FILES.items():
        # A source without a survey (a small fixture) simply has no human records for it.
        if dataset not in rows or not all(ANNOTATIONS + name in available for name in names):
            continue
        texts = [upstream.read_text(ANNOTATIONS + name) for name in names]
        order = upstream.read_json(QUESTION_ORDER_FILES[dataset])
        records.extend(human_records(dataset, steering, texts, order, rows[dataset]))
    store.append(records)
    return len(records)
