"""``opinionqa_subset``: the 100 contentious OpinionQA questions x six US groups.

One row per (question, group) for Democrat, Republican, Male, Female, Black and
White. Options are in survey order (``references`` of the 500-question
``info.csv``), every option kept, zero-count ones and "Refused" included; the
reference is the group's weighted counts over those options. ``paper_options`` is
the group dict's own key order (alphabetical, zero-count options absent), which is
how the paper's prompts listed them. A group with no respondents to a question
(FEM2_W29 was asked of women only, so it has no Male answers) has no row.
Few-shot neighbours come from the 500-question pool.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

from distalign_data.names import GROUPS
from distalign_data.neighbours import select_few_shot
from distalign_data.schema import row_id

from ._common import UpstreamBuilder, aligned_counts, normalise, parse_string_list

DATASET = "opinionqa_subset"
SUBSET_DIR = "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_100/"
POOL_DIR = "opinions_qa/data/human_resp/Pew_American_Trends_Panel_disagreement_500/"


def _files() -> dict[str, str]:
    files = {"similarity": SUBSET_DIR + "question_similarity_top10.json", "info": POOL_DIR + "info.csv"}
    for attribute in GROUPS[DATASET]:
        files[f"subset/{attribute}"] = f"{SUBSET_DIR}{attribute}_data.json"
        files[f"pool/{attribute}"] = f"{POOL_DIR}{attribute}_data.json"
    return files


def _survey_options(info_rows: dict[str, list[dict]], question_id: str, question_text: str) -> list[str]:
    """Options in survey order; a key listed more than once (IDIMPORT_W43) is matched by its text."""
    if question_id not in info_rows:
        raise ValueError(f"question {question_id!r}: not listed in {POOL_DIR}info.csv")
    candidates = info_rows[question_id]
    if len(candidates) > 1:
        candidates = [entry for entry in candidates if entry["question"] == question_text]
        if len(candidates) != 1:
            raise ValueError(
                f"question {question_id!r}: listed more than once in {POOL_DIR}info.csv and "
                f"{len(candidates)} of the entries have its text {question_text!r}"
            )
    return parse_string_list(candidates[0]["references"], where=f"question {question_id!r} references")


class OpinionQASubset(UpstreamBuilder):
    DATASET = DATASET
    LICENSE = "other"
    DESCRIPTION = (
        "The 100 contentious OpinionQA (Pew American Trends Panel) questions used by Meister, Guestrin "
        "and Hashimoto (NAACL 2025), one row per (question, group) for Democrat, Republican, Male, "
        "Female, Black and White, with the group's reference answer distribution and five few-shot "
        "neighbours from the 500-question pool."
    )
    FILES = {"default": _files()}

    def _rows(self, paths: dict[str, str]) -> Iterator[dict]:
        with open(paths["info"], encoding="utf-8", newline="") as handle:
            info_rows: dict[str, list[dict]] = {}
            for entry in csv.DictReader(handle):
                info_rows.setdefault(entry["key"], []).append(entry)
        with open(paths["similarity"], encoding="utf-8") as handle:
            similarity = json.load(handle)
        subset, pool = {}, {}
        for attribute in GROUPS[DATASET]:
            with open(paths[f"subset/{attribute}"], encoding="utf-8") as handle:
                subset[attribute] = json.load(handle)
            with open(paths[f"pool/{attribute}"], encoding="utf-8") as handle:
                pool[attribute] = json.load(handle)
        first_attribute = next(iter(GROUPS[DATASET]))
        for question_id in subset[first_attribute]:
            if question_id not in similarity:
                raise ValueError(f"question {question_id!r}: no similarity list")
            similar = [other for other in similarity[question_id] if other != question_id]
            for attribute, groups in GROUPS[DATASET].items():
                if question_id not in subset[attribute]:
                    raise ValueError(f"question {question_id!r}: missing from {attribute}_data.json")
                entry = subset[attribute][question_id]
                options = _survey_options(info_rows, question_id, entry["question_text"])
                for group in groups:
                    counts_by_text = entry.get(group) or {}
                    if not counts_by_text:
                        continue  # nobody in this group answered (FEM2_W29 / Male)
                    yield self._row(question_id, entry["question_text"], options, attribute, group,
                                    counts_by_text, similar, pool[attribute], info_rows)

    def _row(self, question_id, question, options, attribute, group, counts_by_text, similar, pool, info_rows):
        name = f"row {row_id(question_id, group)!r}"
        counts = aligned_counts(counts_by_text, options, where=name)
        distribution = normalise(counts, where=name)
        candidates = []
        for candidate_id in similar:
            candidate = pool.get(candidate_id)
            group_counts = (candidate or {}).get(group) or {}
            candidate_options = (
                _survey_options(info_rows, candidate_id, candidate["question_text"]) if candidate else []
            )
            candidates.append({
                "question_id": candidate_id,
                "question": candidate["question_text"] if candidate else "",
                "options": candidate_options,
                "distribution": normalise(
                    aligned_counts(group_counts, candidate_options, where=f"{name} neighbour {candidate_id!r}"),
                    where=f"{name} neighbour {candidate_id!r}",
                ) if group_counts else None,
            })
        return {
            "id": row_id(question_id, group),
            "dataset": DATASET,
            "question_id": question_id,
            "question": question,
            "options": options,
            "distribution": distribution,
            "counts": counts,
            "respondents": sum(counts),
            "group_attribute": attribute,
            "group": group,
            "paper_options": list(counts_by_text),
            "similar_question_ids": list(similar),
            "few_shot": select_few_shot(question_id, options, distribution, candidates),
        }
