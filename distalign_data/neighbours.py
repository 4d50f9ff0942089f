"""Few-shot neighbour selection: the paper's intended rule (protocol section 9).

From a row's similar questions (up to 10, most similar first) take the
``NUM_FEW_SHOT`` whose reference distributions for the row's group are most
distinct from the row's own. Distinctness is the total variation with the two
distributions aligned by option text (an option one side lacks has mass 0); a
candidate with a different number of options counts as most distinct (distance 1,
the largest a TV can be). Ties go to the more similar question. Candidates that are
the row's own question, or that have no distribution for the group, are skipped.
The chosen neighbours are returned in similarity order.

>>> target = (["Yes", "No"], [0.5, 0.5])
>>> candidates = [
...     {"question_id": "a", "options": ["Yes", "No"], "distribution": [0.5, 0.5]},
...     {"question_id": "b", "options": ["Yes", "No"], "distribution": [0.9, 0.1]},
...     {"question_id": "c", "options": ["Yes", "No", "Maybe"], "distribution": [0.4, 0.4, 0.2]},
... ]
>>> [n["question_id"] for n in select_few_shot("t", *target, candidates, k=2)]
['b', 'c']
"""

from __future__ import annotations

from collections.abc import Sequence

from distalign_data.distributions import align, total_variation
from distalign_data.schema import NUM_FEW_SHOT

MISMATCH_DISTANCE = 1.0


def distinctness(options_a: Sequence[str], probs_a: Sequence[float], options_b: Sequence[str], probs_b: Sequence[float]) -> float:
    """How different two questions' answer distributions are (0 to 1, higher is more distinct).

    >>> distinctness(["A", "B"], [1.0, 0.0], ["B", "A"], [1.0, 0.0])
    1.0
    >>> distinctness(["A", "B"], [0.5, 0.5], ["A", "C"], [0.5, 0.5])
    0.5
    >>> distinctness(["A", "B"], [0.5, 0.5], ["A", "B", "C"], [0.5, 0.5, 0.0])
    1.0
    """
    if len(options_a) != len(options_b):
        return MISMATCH_DISTANCE
    union = list(options_a) + [option for option in options_b if option not in options_a]
    distance = total_variation([align(options_a, probs_a, union)], [align(options_b, probs_b, union)], check_sum=False)[0]
    # Rounding makes equal distances compare equal, so ties fall to the similarity rank.
    return round(float(distance), 9)


def select_few_shot(
    question_id: str,
    options: Sequence[str],
    distribution: Sequence[float],
    candidates: Sequence[dict],
    *,
    k: int = NUM_FEW_SHOT,
) -> list[dict]:
    """The ``k`` candidates most distinct from the target, in similarity order.

    ``candidates`` are the similar questions, most similar first, each a dict with
    at least ``question_id``, ``options`` and ``distribution`` (``None`` when the
    group has no answers to it). Raises ``ValueError`` naming the question when
    fewer than ``k`` usable candidates remain.
    """
    usable = [
        (rank, candidate)
        for rank, candidate in enumerate(candidates)
        if candidate["question_id"] != question_id and candidate["distribution"] is not None
    ]
    if len(usable) < k:
        raise ValueError(
            f"question {question_id!r}: only {len(usable)} similar questions have a distribution "
            f"for this group, {k} are needed"
        )
    ranked = sorted(
        usable,
        key=lambda item: (-distinctness(options, distribution, item[1]["options"], item[1]["distribution"]), item[0]),
    )
    return [candidate for _, candidate in sorted(ranked[:k], key=lambda item: item[0])]
