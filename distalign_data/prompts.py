"""Prompt templates: 3 expression methods x 3 steering methods, rendered from a benchmark row.

A :class:`Prompt` holds the chat messages (system + user), the options in the
order the prompt presents them (letter i = ``options[i]``), a plain-text
rendering for models without a chat template, the template version and a
SHA-256 of the rendered content. Rendering is deterministic given the seed; the
only random part is the example answers of few-shot sequence prompts, drawn
from each neighbour's distribution with a generator seeded by (seed, row id,
neighbour id).

Options are presented in the row's survey (or Likert) order, ``row["options"]``.
A prompt without steering never mentions the group, so every group row of one
question gets the very same prompt (and a cache serves one response to all).

>>> row = {"id": "Q1/Male", "dataset": "opinionqa_subset", "question_id": "Q1",
...        "question": "Do you like tea?", "options": ["Yes", "No"],
...        "group_attribute": "SEX", "group": "Male", "few_shot": []}
>>> p = render_prompt(row, "logprobs", "persona", seed=0)
>>> p.letters, p.text.endswith("Answer:")
(('A', 'B'), True)
>>> "men" in p.messages[1]["content"]
True
>>> render_prompt(row, "sequence", "none", seed=0) == render_prompt({**row, "group": "Female"}, "sequence", "none", seed=1)
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Any, Mapping, Sequence

from distalign_data.names import EXPRESSION_METHODS
from distalign_data.names import STEERING_METHODS
from distalign_data.parsing import option_letters

TEMPLATE_VERSION = "distalign-prompts-2"
# The sequence method asks for this many sampled answers (the paper's protocol).
SEQUENCE_LENGTH = 30

SYSTEM_MESSAGE = "You are a careful assistant who follows the requested answer format exactly."

# How a persona prompt names a group; groups not listed are named as they are.
_GROUP_PHRASES = {
    ("POLPARTY", "Democrat"): "Democrats in the United States",
    ("POLPARTY", "Republican"): "Republicans in the United States",
    ("SEX", "Male"): "men in the United States",
    ("SEX", "Female"): "women in the United States",
    ("RACE", "Black"): "Black adults in the United States",
    ("RACE", "White"): "White adults in the United States",
}

_METHOD_TASK = {
    "logprobs": "Reply with the single letter of the option {who} would most likely pick, and nothing else.",
    "sequence": (
        "Imagine asking {count} different {people} this question. Write down their {count} answers as "
        "{count} option letters separated by spaces, so that how often each letter appears matches how "
        "{who_plural} would actually split. Write only the letters."
    ),
    "verbalize": (
        "Estimate what share of {people} would pick each option. Reply with only a JSON object that maps "
        'each option letter to a whole-number percentage, for example {{"A": 25, "B": 75}}; the '
        "percentages add up to 100."
    ),
}

# The cue that ends the plain-text rendering (models without a chat template).
_ANSWER_CUE = {"logprobs": "Answer:", "sequence": "Answers:", "verbalize": "Percentages:"}


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One rendered prompt; ``options[i]`` is the option shown with ``letters[i]``."""

    messages: tuple[Mapping[str, str], ...]
    options: tuple[str, ...]
    letters: tuple[str, ...]
    template_version: str
    text: str
    sha256: str


def group_phrase(group_attribute: str, group: str) -> str:
    """How prompts name a group: ``group_phrase("COUNTRY", "Japan")`` -> ``'people living in Japan'``."""
    if group_attribute == "COUNTRY":
        return f"people living in {group}"
    return _GROUP_PHRASES.get((group_attribute, group), f'people who belong to the group "{group}"')


def _percentages(distribution: Sequence[float]) -> list[int]:
    """Whole percentages that add up to 100 (largest remainders round up), as the verbalize prompt asks of answers.

    >>> _percentages([1 / 3, 1 / 3, 1 / 3]), _percentages([0.874, 0.113, 0.013, 0.0])
    ([34, 33, 33], [88, 11, 1, 0])
    """
    total = sum(float(p) for p in distribution)
    exact = [100 * float(p) / total for p in distribution]
    whole = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (whole[i] - exact[i], i))
    for i in by_remainder[: 100 - sum(whole)]:
        whole[i] += 1
    return whole


def _subject_block(item: Mapping[str, Any], dataset: str) -> str:
    """The question (with the book's details for NYT) and its lettered options."""
    lines = []
    if dataset == "nyt_books":
        lines += [
            f"Book title: {item['title']}",
            f"Author: {item['author']}",
            f"Genre: {item['genre']}",
            f"Summary: {item['summary']}",
        ]
    lines.append(f"Question: {item['question']}")
    lines.append("Options:")
    letters = option_letters(item["options"])
    lines += [f"{letter}. {option}" for letter, option in zip(letters, item["options"])]
    return "\n".join(lines)


def _example_answer(method: str, neighbour: Mapping[str, Any], rng: random.Random) -> str:
    letters = option_letters(neighbour["options"])
    weights = [float(p) for p in neighbour["distribution"]]
    if method == "verbalize":
        return json.dumps(dict(zip(letters, _percentages(weights))))
    draws = rng.choices(letters, weights=weights, k=SEQUENCE_LENGTH if method == "sequence" else 1)
    return " ".join(draws)


def _few_shot_blocks(row: Mapping[str, Any], method: str, seed: int) -> str:
    neighbours = row.get("few_shot") or []
    if not neighbours:
        raise ValueError(f"row {row.get('id')!r}: few_shot steering needs the row's few_shot neighbours, found none")
    blocks = []
    for number, neighbour in enumerate(neighbours, start=1):
        if len(neighbour["distribution"]) != len(neighbour["options"]):
            raise ValueError(
                f"row {row.get('id')!r}: few_shot neighbour {neighbour.get('question_id')!r} has "
                f"{len(neighbour['distribution'])} probabilities for {len(neighbour['options'])} options"
            )
        if not sum(float(p) for p in neighbour["distribution"]) > 0 or min(neighbour["distribution"]) < 0:
            raise ValueError(
                f"row {row.get('id')!r}: few_shot neighbour {neighbour.get('question_id')!r} has a distribution "
                f"that is not a probability distribution: {list(neighbour['distribution'])}"
            )
        rng = random.Random(f"{seed}\x1f{row['id']}\x1f{neighbour.get('question_id')}\x1f{method}")
        letters = option_letters(neighbour["options"])
        shares = ", ".join(f"{l}: {p}%" for l, p in zip(letters, _percentages(neighbour["distribution"])))
        blocks.append(
            f"Example {number}\n{_subject_block(neighbour, row['dataset'])}\n"
            f"How the group actually answered: {shares}\n"
            f"Example answer: {_example_answer(method, neighbour, rng)}"
        )
    return "\n\n".join(blocks)


def _user_message(row: Mapping[str, Any], method: str, steering: str, seed: int) -> str:
    if steering == "none":
        who, people, who_plural = "you", "people", "people in general"
    else:
        people = group_phrase(row["group_attribute"], row["group"])
        who, who_plural = f"one of the {people}", people
    task = _METHOD_TASK[method].format(who=who, people=people, who_plural=who_plural, count=SEQUENCE_LENGTH)
    parts = []
    if steering == "none":
        parts.append("Here is a multiple-choice survey question.")
    elif steering == "persona":
        parts.append(f"Answer the following multiple-choice survey question as {people} would.")
    else:
        parts.append(
            f"Below are survey questions put to {people}, each with the share of the group that picked "
            "each option and an example answer in the requested format. Use them to understand this "
            "group, then answer the last question for the same group."
        )
        parts.append(_few_shot_blocks(row, method, seed))
        parts.append("Now the question to answer.")
    parts.append(_subject_block(row, row["dataset"]))
    parts.append(task)
    if steering == "few_shot" and method == "verbalize":
        parts.append("Give your own estimate for this question rather than repeating the percentages of the examples.")
    return "\n\n".join(parts)


def render_prompt(row: Mapping[str, Any], method: str, steering: str, *, seed: int) -> Prompt:
    """Render the prompt of one benchmark row for an expression method and a steering method.

    Raises ValueError naming the row when the method, the steering method or the
    row's options or few-shot neighbours are unusable.
    """
    if method not in EXPRESSION_METHODS:
        raise ValueError(f"row {row.get('id')!r}: unknown expression method {method!r}; expected one of {EXPRESSION_METHODS}")
    if steering not in STEERING_METHODS:
        raise ValueError(f"row {row.get('id')!r}: unknown steering method {steering!r}; expected one of {STEERING_METHODS}")
    options = tuple(row["options"])
    try:
        letters = tuple(option_letters(options))
    except ValueError as error:
        raise ValueError(f"row {row.get('id')!r}: {error}") from None
    user = _user_message(row, method, steering, seed)
    messages = ({"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user})
    text = f"{SYSTEM_MESSAGE}\n\n{user}\n\n{_ANSWER_CUE[method]}"
    digest = hashlib.sha256(
        json.dumps([TEMPLATE_VERSION, list(messages), text], ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()
    return Prompt(messages, options, letters, TEMPLATE_VERSION, text, digest)
