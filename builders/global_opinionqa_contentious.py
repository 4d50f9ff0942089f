"""``global_opinionqa_contentious``: the 100 contentious GlobalOpinionQA questions x their countries.

One row per (question, country) for every country listed with a question (three,
or four for two questions: 302 rows). The upstream "groups" 0, 1, 2 are positions
in each question's ``countries`` list; ``group_position`` keeps that position. The
options are the question's ``MC_options`` (a Python-list string, parsed without
evaluating it) in their stored order, zero-probability options kept; the
reference is the country's stored probability list renormalised to sum to 1 (the
stored lists sum to 0.998-1.002). Option j was shown with letter j, so
``paper_options`` equals ``options``. There are no counts. Few-shot neighbours and
similar questions come from ``question_similarity.json`` (most are questions of the
full GlobalOpinionQA, outside the 100).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from distalign_data.neighbours import select_few_shot
from distalign_data.schema import gv_question_id, row_id

from ._common import UpstreamBuilder, normalise, parse_string_list

DATASET = "global_opinionqa_contentious"
DATA_DIR = "Global_Values/data/"
GROUP_ATTRIBUTE = "COUNTRY"


class GlobalOpinionQAContentious(UpstreamBuilder):
    DATASET = DATASET
    # Anthropic's llm_global_opinions (from which these questions and distributions come) is CC BY-NC-SA 4.0.
    LICENSE = "cc-by-nc-sa-4.0"
    DESCRIPTION = (
        "The 100 contentious GlobalOpinionQA questions used by Meister, Guestrin and Hashimoto "
        "(NAACL 2025), one row per (question, country) for every country listed with the question, "
        "with the country's reference answer distribution and five few-shot neighbours."
    )
    FILES = {"default": {"data": DATA_DIR + "data.json", "similarity": DATA_DIR + "question_similarity.json"}}

    def _rows(self, paths: dict[str, str]) -> Iterator[dict]:
        with open(paths["data"], encoding="utf-8") as handle:
            questions = json.load(handle)
        with open(paths["similarity"], encoding="utf-8") as handle:
            similarity = json.load(handle)
        for text, entry in questions.items():
            question_id = gv_question_id(text)
            options = parse_string_list(entry["MC_options"], where=f"question {question_id!r} MC_options")
            for position, country in enumerate(entry["countries"]):
                name = f"row {row_id(question_id, country)!r}"
                stored = entry.get(country)
                if stored is None or len(stored) != len(options):
                    raise ValueError(f"{name}: the stored distribution does not match the {len(options)} options")
                distribution = normalise(stored, where=name)
                similar = similarity.get(text, {}).get(country)
                if similar is None:
                    raise ValueError(f"{name}: no similarity list for this country")
                candidates = [
                    self._candidate(similar_text, values, name)
                    for similar_text, values in similar.items()
                    if similar_text != text
                ]
                yield {
                    "id": row_id(question_id, country),
                    "dataset": DATASET,
                    "question_id": question_id,
                    "question": text,
                    "options": options,
                    "distribution": distribution,
                    "counts": None,
                    "respondents": None,
                    "group_attribute": GROUP_ATTRIBUTE,
                    "group": country,
                    "group_position": position,
                    "paper_options": options,
                    "similar_question_ids": [candidate["question_id"] for candidate in candidates],
                    "few_shot": select_few_shot(question_id, options, distribution, candidates),
                }

    @staticmethod
    def _candidate(text: str, values: list, name: str) -> dict:
        """A similar question as ``question_similarity.json`` stores it: ``[{option text: probability}]``."""
        where = f"{name} neighbour {text[:60]!r}"
        if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], dict):
            raise ValueError(f"{where}: expected a one-element list holding an option -> probability dict")
        probabilities = values[0]
        has_mass = sum(probabilities.values()) > 0
        return {
            "question_id": gv_question_id(text),
            "question": text,
            "options": list(probabilities),
            "distribution": normalise(list(probabilities.values()), where=where) if has_mass else None,
        }
