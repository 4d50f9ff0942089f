"""The benchmark row: its ``datasets.Features`` per dataset, its ids, and a validator.

A row is one (question, group) pair (see ``docs/interfaces.md``). The three
datasets share one core feature set; NYT rows (and their few-shot entries) add the
book fields, GlobalOpinionQA rows add ``group_position``. ``datasets`` is imported
inside the functions so that importing this module stays cheap.

>>> nyt_question_id("The Bee Sting By Paul Murray")
'nyt-55f52e40bf'
>>> row_id("FEM2_W29", "Female")
'FEM2_W29/Female'
>>> sorted(set(row_columns("nyt_books")) - set(row_columns("opinionqa_subset")))
['author', 'genre', 'nyt_url', 'summary', 'title']
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from distalign_data.names import DATASETS

NYT = "nyt_books"
GV = "global_opinionqa_contentious"
NUM_FEW_SHOT = 5
MAX_SIMILAR = 10
# A float32 distribution normalised in float64 sums to 1 within a few 1e-7.
SUM_TOLERANCE = 1e-6

BOOK_FIELDS = ("title", "author", "genre", "summary")
# Columns in the order a row dict holds them; per-dataset extras are inserted by row_columns.
_CORE_COLUMNS = (
    "id",
    "dataset",
    "question_id",
    "question",
    "options",
    "distribution",
    "counts",
    "respondents",
    "group_attribute",
    "group",
    "paper_options",
    "similar_question_ids",
    "few_shot",
)
_FEW_SHOT_COLUMNS = ("question_id", "question", "options", "distribution")


def _short_sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def nyt_question_id(upstream_key: str) -> str:
    """Question id of an NYT book from its upstream key (``"<Title> By <Author>"``)."""
    return f"nyt-{_short_sha1(upstream_key)}"


def gv_question_id(question_text: str) -> str:
    """Question id of a GlobalOpinionQA question from its exact upstream text."""
    return f"gv-{_short_sha1(question_text)}"


def row_id(question_id: str, group: str) -> str:
    """The stable row id ``"<question_id>/<group>"``."""
    return f"{question_id}/{group}"


def row_columns(dataset: str) -> tuple[str, ...]:
    """The keys a row of ``dataset`` holds, in order."""
    _check_dataset(dataset)
    columns = list(_CORE_COLUMNS)
    if dataset == GV:
        columns.insert(columns.index("group") + 1, "group_position")
    if dataset == NYT:
        columns.extend((*BOOK_FIELDS, "nyt_url"))
    return tuple(columns)


def few_shot_columns(dataset: str) -> tuple[str, ...]:
    """The keys of one few-shot neighbour of ``dataset``."""
    _check_dataset(dataset)
    return _FEW_SHOT_COLUMNS + (BOOK_FIELDS if dataset == NYT else ())


def row_features(dataset: str):
    """The ``datasets.Features`` of a benchmark row of ``dataset``."""
    from datasets import Features, List, Value

    string = Value("string")
    few_shot_types = {
        "question_id": string,
        "question": string,
        "options": List(string),
        "distribution": List(Value("float32")),
    }
    few_shot_types.update({field: string for field in BOOK_FIELDS})
    types = {
        "id": string,
        "dataset": string,
        "question_id": string,
        "question": string,
        "options": List(string),
        "distribution": List(Value("float32")),
        "counts": List(Value("float64")),
        "respondents": Value("float64"),
        "group_attribute": string,
        "group": string,
        "group_position": Value("int32"),
        "paper_options": List(string),
        "similar_question_ids": List(string),
        "few_shot": List({key: few_shot_types[key] for key in few_shot_columns(dataset)}),
        "nyt_url": string,
    }
    types.update({field: string for field in BOOK_FIELDS})
    return Features({key: types[key] for key in row_columns(dataset)})


ANNOTATION_COLUMNS = (
    "id",
    "question_id",
    "title",
    "author",
    "annotator",
    "rating",
    "rating_index",
    "groups",
    "gender",
    "race",
    "party",
    "income",
    "age_band",
)


def annotation_features():
    """The ``datasets.Features`` of one NYT rating (the ``annotations`` config of ``nyt_books``).

    ``annotator`` is a project-assigned number (1, 2, ...), never a worker ID;
    ``rating_index`` is the position of ``rating`` in the Likert options (0-3);
    ``groups`` lists the groups whose reference counts the rating belongs to.
    """
    from datasets import Features, List, Value

    types = {column: Value("string") for column in ANNOTATION_COLUMNS}
    types.update(annotator=Value("int32"), rating_index=Value("int32"), groups=List(Value("string")))
    return Features(types)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def _check_distribution(where: str, options: Any, distribution: Any) -> None:
    if not isinstance(options, list) or not options or not all(isinstance(o, str) and o for o in options):
        raise ValueError(f"{where}: options must be a non-empty list of non-empty strings, got {options!r}")
    if len(set(options)) != len(options):
        raise ValueError(f"{where}: options repeat an option text: {options!r}")
    if not isinstance(distribution, list) or len(distribution) != len(options):
        raise ValueError(
            f"{where}: distribution has {len(distribution) if isinstance(distribution, list) else 'no'} "
            f"entries for {len(options)} options"
        )
    if any(not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0 for p in distribution):
        raise ValueError(f"{where}: distribution has a negative or non-finite entry: {distribution!r}")
    total = math.fsum(distribution)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{where}: distribution sums to {total!r}, not 1 (tolerance {SUM_TOLERANCE})")


def validate_row(row: dict, dataset: str) -> None:
    """Raise ``ValueError`` naming the row and the problem if ``row`` breaks the schema.

    >>> validate_row({"id": "q/Male"}, "opinionqa_subset")
    Traceback (most recent call last):
    ...
    ValueError: row 'q/Male': missing keys ['counts', 'dataset', 'distribution', 'few_shot', 'group', 'group_attribute', 'options', 'paper_options', 'question', 'question_id', 'respondents', 'similar_question_ids']
    """
    name = f"row {row.get('id')!r}"
    expected = set(row_columns(dataset))
    if set(row) != expected:
        missing, extra = sorted(expected - set(row)), sorted(set(row) - expected)
        raise ValueError(f"{name}: " + "; ".join(
            part for part in (missing and f"missing keys {missing}", extra and f"unexpected keys {extra}") if part
        ))
    if row["dataset"] != dataset:
        raise ValueError(f"{name}: dataset is {row['dataset']!r}, expected {dataset!r}")
    if row["id"] != row_id(row["question_id"], row["group"]):
        raise ValueError(f"{name}: id must be {row_id(row['question_id'], row['group'])!r}")
    for key in ("question", "group", "group_attribute"):
        if not isinstance(row[key], str) or not row[key]:
            raise ValueError(f"{name}: {key} must be a non-empty string")
    _check_distribution(name, row["options"], row["distribution"])
    if row["counts"] is not None:
        if len(row["counts"]) != len(row["options"]) or any(c < 0 for c in row["counts"]):
            raise ValueError(f"{name}: counts must be non-negative and aligned with options")
        if row["respondents"] is None or abs(math.fsum(row["counts"]) - row["respondents"]) > 1e-6:
            raise ValueError(f"{name}: respondents must equal the sum of counts")
    elif row["respondents"] is not None:
        raise ValueError(f"{name}: respondents given without counts")
    paper_options = row["paper_options"]
    if len(set(paper_options)) != len(paper_options) or not set(paper_options) <= set(row["options"]):
        raise ValueError(f"{name}: paper_options {paper_options!r} are not distinct options of the row")
    similar = row["similar_question_ids"]
    if len(similar) > MAX_SIMILAR or row["question_id"] in similar:
        raise ValueError(f"{name}: similar_question_ids must hold at most {MAX_SIMILAR} other questions")
    few_shot = row["few_shot"]
    if len(few_shot) != NUM_FEW_SHOT:
        raise ValueError(f"{name}: few_shot holds {len(few_shot)} neighbours, expected {NUM_FEW_SHOT}")
    for index, neighbour in enumerate(few_shot):
        where = f"{name}, few_shot[{index}]"
        if set(neighbour) != set(few_shot_columns(dataset)):
            raise ValueError(f"{where}: keys {sorted(neighbour)} differ from {sorted(few_shot_columns(dataset))}")
        if neighbour["question_id"] == row["question_id"] or neighbour["question_id"] not in similar:
            raise ValueError(f"{where}: {neighbour['question_id']!r} is the row's own question or not a similar one")
        _check_distribution(where, neighbour["options"], neighbour["distribution"])
    if len({n["question_id"] for n in few_shot}) != NUM_FEW_SHOT:
        raise ValueError(f"{name}: few_shot repeats a question")
    if dataset == GV and (not isinstance(row["group_position"], int) or row["group_position"] < 0):
        raise ValueError(f"{name}: group_position must be a non-negative int")
