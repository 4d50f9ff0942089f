"""``nyt_books``: NYT Book Opinions, 235 books x Democrat, Republican, Male, Female.

Config ``default``: one row per (book, group). Options are the four Likert labels
in order; the reference is the group's rating counts from ``nytimes/data.json``
(the aggregate the paper scored; a missing label counts 0). Title, author and link
come from ``NYTimes_TextData.csv`` (as the New York Times list prints them, titles
in capitals), matched to the upstream key "<Title> By <Author>" without regard to
case; genre and summary come from ``data.json``.

Config ``annotations``: one row per (book, annotator) rating from
``individual_annotations/``, with the annotator's coarse demographics. Annotators
are numbered 1, 2, ... in order of first appearance in the ratings file; no worker
ID or pseudonym of one is kept.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

import datasets

from distalign_data.names import GROUPS
from distalign_data.neighbours import select_few_shot
from distalign_data.schema import BOOK_FIELDS, annotation_features, nyt_question_id, row_id

from ._common import SourceConfig, UpstreamBuilder, VERSION, aligned_counts, normalise

DATASET = "nyt_books"
DATA_DIR = "nytimes/"
ANNOTATIONS_DIR = DATA_DIR + "individual_annotations/"
LIST_SEPARATOR = " by "
QUESTION = "How likely are you to read this book?"
BOOK_KEYS = ("MC_options", "genre", "summary")
# Annotator demographics columns of the upstream CSV -> annotation fields.
DEMOGRAPHIC_COLUMNS = {"gender": "QDem_Gend", "race": "QDem_Race", "party": "Q_DemRepub", "income": "QDem_Income"}
AGE_COLUMN = "QDem_Age"
WORKER_COLUMN = "Q84"
AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64))
SPECIFY_SUFFIX = " (please specify)"


def _match_key(text: str) -> str:
    """A book's key for matching the upstream key with the NYT list's "<TITLE> by <Author>".

    >>> _match_key("Hamnet By Maggie O\u2019Farrell") == _match_key("HAMNET by Maggie O'Farrell")
    True
    """
    return text.casefold().replace("\u2019", "'").strip()


def read_book_list(path: str) -> dict[str, dict[str, str]]:
    """``NYTimes_TextData.csv`` as match key -> title, author, link (see ``_match_key``)."""
    table = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for line in csv.DictReader(handle):
            parts = line["Title and Author"].split(LIST_SEPARATOR)
            if len(parts) != 2 or not all(part.strip() for part in parts):
                raise ValueError(f"book list entry {line['Title and Author']!r}: expected '<TITLE> by <Author>'")
            key = _match_key(line["Title and Author"])
            if key in table:
                raise ValueError(f"book list entry {line['Title and Author']!r} occurs twice")
            table[key] = {
                "title": parts[0].strip(), "author": parts[1].strip(), "nyt_url": line["Links"]}
    return table


def age_band(age: str) -> str | None:
    """A coarse age band (exact ages are not published).

    >>> [age_band(a) for a in ("18", "34", "64", "77", "n/a")]
    ['18-24', '25-34', '55-64', '65+', None]
    """
    if not age.strip().isdigit():
        return None
    years = int(age)
    for low, high in AGE_BANDS:
        if low <= years <= high:
            return f"{low}-{high}"
    return f"{AGE_BANDS[-1][1] + 1}+" if years > AGE_BANDS[-1][1] else None


def _coarse(value: str) -> str | None:
    value = value.strip()
    if value.endswith(SPECIFY_SUFFIX):
        value = value[: -len(SPECIFY_SUFFIX)]
    return value or None


class NYTBooks(UpstreamBuilder):
    DATASET = DATASET
    # The upstream repository states no licence; summaries are New York Times text.
    LICENSE = "other"
    DESCRIPTION = (
        "NYT Book Opinions from Meister, Guestrin and Hashimoto (NAACL 2025): 235 books from New York "
        "Times book lists, one row per (book, group) for Democrat, Republican, Male and Female, with the "
        "group's distribution of 4-point 'how likely to read' ratings and five few-shot neighbours; the "
        "'annotations' config holds the individual ratings with coarse annotator demographics."
    )
    BUILDER_CONFIGS = [
        SourceConfig(name="default", version=VERSION, description="one row per (book, group)"),
        SourceConfig(name="annotations", version=VERSION, description="one row per (book, annotator) rating"),
    ]
    FILES = {
        "default": {
            "data": DATA_DIR + "data.json",
            "links": DATA_DIR + "NYTimes_TextData.csv",
            "similarity": DATA_DIR + "question_similarity_top10.json",
        },
        "annotations": {
            "data": DATA_DIR + "data.json",
            "links": DATA_DIR + "NYTimes_TextData.csv",
            "ratings": ANNOTATIONS_DIR + "NYTIMES_proportions_ID.json",
            "demographics": ANNOTATIONS_DIR + "nytimes_annotator_demographics.csv",
        },
    }

    def _features(self) -> datasets.Features:
        return annotation_features() if self.config.name == "annotations" else super()._features()

    def _rows(self, paths: dict[str, str]) -> Iterator[dict]:
        with open(paths["data"], encoding="utf-8") as handle:
            books = json.load(handle)
        if self.config.name == "annotations":
            yield from self._annotations(books, paths)
        else:
            yield from self._group_rows(books, paths)

    @staticmethod
    def _books(books: dict, listing: dict[str, dict[str, str]]) -> dict[str, dict]:
        """Upstream key -> the book's question, options and book fields."""
        described = {}
        for key, entry in books.items():
            missing = [field for field in BOOK_KEYS if field not in entry]
            if missing:
                raise ValueError(f"book {key!r}: missing {missing}")
            listed = listing.get(_match_key(key))
            if listed is None:
                raise ValueError(f"book {key!r}: not in NYTimes_TextData.csv")
            described[key] = {"question": QUESTION, "options": list(entry["MC_options"]),
                              "genre": entry["genre"], "summary": entry["summary"], **listed}
        return described

    def _group_rows(self, books: dict, paths: dict[str, str]) -> Iterator[dict]:
        with open(paths["similarity"], encoding="utf-8") as handle:
            similarity = json.load(handle)
        described = self._books(books, read_book_list(paths["links"]))
        for key, entry in books.items():
            question_id = nyt_question_id(key)
            book = described[key]
            if key not in similarity or any(other not in books for other in similarity[key]):
                raise ValueError(f"book {key!r}: missing similarity list or unknown similar book")
            similar = [other for other in similarity[key] if other != key]
            for attribute, groups in GROUPS[DATASET].items():
                for group in groups:
                    name = f"row {row_id(question_id, group)!r}"
                    counts = aligned_counts(entry.get(group, {}), book["options"], where=name)
                    distribution = normalise(counts, where=name)
                    candidates = []
                    for other in similar:
                        other_counts = books[other].get(group) or {}
                        candidates.append({
                            "question_id": nyt_question_id(other),
                            **{field: described[other][field] for field in ("question", "options", *BOOK_FIELDS)},
                            "distribution": normalise(
                                aligned_counts(other_counts, described[other]["options"], where=f"{name} neighbour {other!r}"),
                                where=f"{name} neighbour {other!r}",
                            ) if sum(other_counts.values()) > 0 else None,
                        })
                    yield {
                        "id": row_id(question_id, group),
                        "dataset": DATASET,
                        "question_id": question_id,
                        "question": book["question"],
                        "options": book["options"],
                        "distribution": distribution,
                        "counts": counts,
                        "respondents": sum(counts),
                        "group_attribute": attribute,
                        "group": group,
                        "paper_options": book["options"],
                        "similar_question_ids": [nyt_question_id(other) for other in similar],
                        "few_shot": select_few_shot(question_id, book["options"], distribution, candidates),
                        **{field: book[field] for field in BOOK_FIELDS},
                        "nyt_url": book["nyt_url"],
                    }

    @staticmethod
    def _demographics(path: str) -> dict[str, dict]:
        """Worker -> coarse demographics; a field on which duplicate rows disagree becomes None."""
        people: dict[str, dict] = {}
        with open(path, encoding="utf-8", newline="") as handle:
            for line in csv.DictReader(handle):
                record = {field: _coarse(line[column]) for field, column in DEMOGRAPHIC_COLUMNS.items()}
                record["age_band"] = age_band(line[AGE_COLUMN])
                known = people.setdefault(line[WORKER_COLUMN], record)
                for field, value in record.items():
                    if known[field] != value:
                        known[field] = None
        return people

    def _annotations(self, books: dict, paths: dict[str, str]) -> Iterator[dict]:
        with open(paths["ratings"], encoding="utf-8") as handle:
            ratings = json.load(handle)
        people = self._demographics(paths["demographics"])
        described = self._books(books, read_book_list(paths["links"]))
        numbers: dict[str, int] = {}
        groups = [group for members in GROUPS[DATASET].values() for group in members]
        for key, entry in ratings.items():
            if key not in books:
                raise ValueError(f"book {key!r} of the ratings file is not in data.json")
            question_id = nyt_question_id(key)
            options = list(books[key]["MC_options"])
            by_worker: dict[str, dict] = {}
            for group in groups:
                for worker, label in (entry.get(group) or {}).items():
                    rating = by_worker.setdefault(worker, {"rating": label, "groups": []})
                    if rating["rating"] != label:
                        raise ValueError(f"book {key!r}: annotator {numbers.get(worker, '?')} rated it twice, differently")
                    rating["groups"].append(group)
            for worker, rating in by_worker.items():
                number = numbers.setdefault(worker, len(numbers) + 1)
                if worker not in people:
                    raise ValueError(f"book {key!r}: annotator {number} has no demographics row")
                if rating["rating"] not in options:
                    raise ValueError(f"book {key!r}: annotator {number} gave an unknown rating {rating['rating']!r}")
                yield {
                    "id": f"{question_id}/annotator-{number}",
                    "question_id": question_id,
                    "title": described[key]["title"],
                    "author": described[key]["author"],
                    "annotator": number,
                    "rating": rating["rating"],
                    "rating_index": options.index(rating["rating"]),
                    "groups": rating["groups"],
                    **people[worker],
                }
