"""Prompt templates: what each method and steering method shows, determinism, and bad rows."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from distalign_data.prompts import SEQUENCE_LENGTH
from distalign_data.prompts import TEMPLATE_VERSION
from distalign_data.prompts import render_prompt
from tests.tiny_model_helpers import toy_rows

METHODS = ("logprobs", "sequence", "verbalize")


def user(prompt) -> str:
    return prompt.messages[1]["content"]


def example_answers(prompt) -> list[str]:
    return re.findall(r"^Example answer: (.*)$", user(prompt), flags=re.MULTILINE)


@pytest.fixture
def row() -> dict:
    return toy_rows(3)[4]  # q2/Democrat: four options


def test_prompt_shape_and_plain_text(row):
    prompt = render_prompt(row, "verbalize", "persona", seed=0)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert prompt.options == tuple(row["options"]) and prompt.letters == ("A", "B", "C", "D")
    assert "A. Yes\nB. No\nC. Not sure\nD. Refused" in user(prompt)
    assert prompt.text == f"{prompt.messages[0]['content']}\n\n{user(prompt)}\n\nPercentages:"
    assert prompt.template_version == TEMPLATE_VERSION
    expected = hashlib.sha256(
        json.dumps([TEMPLATE_VERSION, list(prompt.messages), prompt.text], ensure_ascii=False, sort_keys=True).encode()
    ).hexdigest()
    assert prompt.sha256 == expected


def test_no_steering_prompt_ignores_the_group_and_persona_names_it(row):
    other = dict(row, group="Republican", id="q2/Republican")
    for method in METHODS:
        assert render_prompt(row, method, "none", seed=0) == render_prompt(other, method, "none", seed=9)
        democrat, republican = (render_prompt(r, method, "persona", seed=0) for r in (row, other))
        assert "Democrats in the United States" in user(democrat) and "Republican" not in user(democrat)
        assert "Republicans in the United States" in user(republican)
        assert "Democrat" not in user(render_prompt(row, method, "none", seed=0))


def test_each_method_asks_for_its_format(row):
    assert "single letter" in user(render_prompt(row, "logprobs", "none", seed=0))
    assert f"{SEQUENCE_LENGTH} option letters separated by spaces" in user(render_prompt(row, "sequence", "none", seed=0))
    assert "JSON object" in user(render_prompt(row, "verbalize", "none", seed=0))
    cues = [render_prompt(row, m, "none", seed=0).text.rsplit("\n", 1)[-1] for m in METHODS]
    assert cues == ["Answer:", "Answers:", "Percentages:"]


def test_few_shot_shows_five_neighbours_with_their_distributions(row):
    prompt = render_prompt(row, "verbalize", "few_shot", seed=0)
    text = user(prompt)
    for neighbour in row["few_shot"]:
        assert f"Question: {neighbour['question']}" in text
    # Neighbour 1 has three options at 0.2 / 0.5 / 0.3.
    assert "How the group actually answered: A: 20%, B: 50%, C: 30%" in text
    assert example_answers(prompt)[1] == '{"A": 20, "B": 50, "C": 30}'
    assert len(example_answers(prompt)) == 5
    # The target question comes last, after the examples.
    assert text.index("Now the question to answer.") < text.index(f"Question: {row['question']}")


def test_few_shot_sequence_examples_are_seeded_draws(row):
    certain = dict(row, few_shot=[dict(n, options=["x", "y"], distribution=[0.0, 1.0]) for n in row["few_shot"]])
    assert example_answers(render_prompt(certain, "sequence", "few_shot", seed=3)) == [" ".join(["B"] * 30)] * 5
    assert example_answers(render_prompt(certain, "logprobs", "few_shot", seed=3)) == ["B"] * 5

    first = render_prompt(row, "sequence", "few_shot", seed=1)
    assert first == render_prompt(row, "sequence", "few_shot", seed=1)
    assert first.sha256 != render_prompt(row, "sequence", "few_shot", seed=2).sha256
    # Over many seeds the draws follow the neighbour's distribution (0.2, 0.5, 0.3).
    letters = "".join(example_answers(render_prompt(row, "sequence", "few_shot", seed=s))[1].replace(" ", "") for s in range(40))
    assert len(letters) == 40 * 30
    assert [letters.count(c) / len(letters) for c in "ABC"] == pytest.approx([0.2, 0.5, 0.3], abs=0.04)


def test_book_and_country_details():
    book = toy_rows(1, dataset="nyt_books")[0]
    text = user(render_prompt(book, "logprobs", "few_shot", seed=0))
    for field in ("Book title: Book 0", "Author: A. Writer", "Genre: Fiction", "Summary: A family story."):
        assert text.count(field) == 6  # five neighbours and the target
    country = dict(toy_rows(1)[0], dataset="global_opinionqa_contentious", group_attribute="COUNTRY", group="Japan")
    assert "people living in Japan" in user(render_prompt(country, "sequence", "persona", seed=0))


def test_bad_rows_are_refused_with_the_row_named(row):
    with pytest.raises(ValueError, match=r"row 'q2/Democrat': unknown expression method 'logprob'"):
        render_prompt(row, "logprob", "none", seed=0)
    with pytest.raises(ValueError, match=r"row 'q2/Democrat': unknown steering method"):
        render_prompt(row, "sequence", "task1", seed=0)
    with pytest.raises(ValueError, match=r"row 'q2/Democrat': few_shot steering needs"):
        render_prompt(dict(row, few_shot=[]), "sequence", "few_shot", seed=0)
    with pytest.raises(ValueError, match=r"row 'q2/Democrat': options has 27 entries"):
        render_prompt(dict(row, options=[str(i) for i in range(27)]), "sequence", "none", seed=0)
    broken = [dict(n, distribution=[1.0]) for n in row["few_shot"]]
    with pytest.raises(ValueError, match=r"neighbour 'n20' has 1 probabilities for 2 options"):
        render_prompt(dict(row, few_shot=broken), "sequence", "few_shot", seed=0)


def test_few_shot_percentages_are_whole_and_add_up_to_100(row):
    thirds = dict(row, few_shot=[dict(n, options=["x", "y", "z"], distribution=[1 / 3] * 3) for n in row["few_shot"]])
    skewed = dict(row, few_shot=[dict(n, options=["x", "y", "z", "w"], distribution=[0.874, 0.113, 0.013, 0.0]) for n in row["few_shot"]])
    # Rounding each share alone would show 33/33/33 and 87/11/1/0 (99%); the largest remainders take the missing point.
    for steered, shares, answer in (
        (thirds, "A: 34%, B: 33%, C: 33%", '{"A": 34, "B": 33, "C": 33}'),
        (skewed, "A: 88%, B: 11%, C: 1%, D: 0%", '{"A": 88, "B": 11, "C": 1, "D": 0}'),
    ):
        prompt = render_prompt(steered, "verbalize", "few_shot", seed=0)
        assert user(prompt).count(f"How the group actually answered: {shares}\n") == 5
        assert example_answers(prompt) == [answer] * 5


def test_only_few_shot_verbalize_warns_against_copying_the_examples(row):
    warning = "rather than repeating the percentages of the examples"
    for method in METHODS:
        for steering in ("none", "persona", "few_shot"):
            text = user(render_prompt(row, method, steering, seed=0))
            assert (warning in text) == (method == "verbalize" and steering == "few_shot"), (method, steering)


def test_persona_log_prob_prompt_names_one_member_of_the_group(row):
    text = user(render_prompt(row, "logprobs", "persona", seed=0))
    assert "the option one of the Democrats in the United States would most likely pick" in text


def test_neighbour_without_a_distribution_is_refused(row):
    empty = [dict(n, distribution=[0.0] * len(n["options"])) for n in row["few_shot"]]
    with pytest.raises(ValueError, match=r"row 'q2/Democrat': few_shot neighbour 'n20' has a distribution that is not"):
        render_prompt(dict(row, few_shot=empty), "verbalize", "few_shot", seed=0)
