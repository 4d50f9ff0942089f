"""Parsers on real-looking model outputs (shapes seen in the paper's released responses;
strings written here). Every expected distribution was computed by hand."""

from __future__ import annotations

import math

import pytest

from distalign_data.parsing import Parsed, parse_logprobs, parse_response, parse_sequence, parse_verbalized

FOUR = ["Very unlikely", "Somewhat unlikely", "Somewhat likely", "Very likely"]
THREE = ["Yes", "No", "Refused"]
TWO = ["Good thing", "Bad thing"]

# (text, options, expected distribution or None, status, extra detail checks)
SEQUENCE_CASES = [
    # clean, space separated, 30 letters: A 6, B 12, C 9, D 3
    ("A B B C D A B B C C A B B C D A B B C C A B B C D A B B C C", FOUR, [6 / 30, 12 / 30, 9 / 30, 3 / 30], "ok", {"n_letters": 30}),
    # unseparated run of capitals (GPT-4 style): C 5, D 3, B 2
    ("CCCDBCDCBD", FOUR, [0.0, 0.2, 0.5, 0.3], "ok", {"n_letters": 10}),
    # leading "Answer:" and commas
    ("Answer: A, A, B, C", THREE, [0.5, 0.25, 0.25], "ok", {}),
    # quoted letters, newline separated
    ("'B'\n'B'\n'A'\n'B'", TWO, [0.25, 0.75], "ok", {}),
    # lower case letters
    ("a b b a a b", TWO, [0.5, 0.5], "repaired", {}),
    # letter outside the range (E for four options) counted and dropped: A1 B2 C1 D1 + E2
    ("A B E C D B E", FOUR, [0.2, 0.4, 0.2, 0.2], "repaired", {"invalid_letters": {"E": 2}}),
    # Llama-style preamble with the run after a colon: C 3, B 2, A 1
    ("Here are 30 simulated answers:\n\nCBCACB", THREE, [1 / 6, 2 / 6, 3 / 6], "repaired", {}),
    # prose glued together and cut off: no answer at all
    ("Hereare30multiple-choiceanswer", FOUR, None, "failed", {}),
    # prose only, with a stray capital run that is not in range (all letters E-Z)
    ("NOT SURE", TWO, None, "failed", {}),
    # empty output
    ("", FOUR, None, "failed", {}),
    # full-width letter folded to ASCII: A 2, B 2
    ("A Ｂ B A", TWO, [0.5, 0.5], "ok", {}),
    # "Answer:" in the middle of a sentence, then brackets
    ("Sure. Answer: [B, B, B, A]", TWO, [0.25, 0.75], "ok", {}),
    # only letters beyond the options
    ("E F E F", TWO, None, "failed", {"invalid_letters": {"E": 2, "F": 2}}),
    # semicolons and a trailing period: C 2, A 1
    ("C; C; A.", THREE, [1 / 3, 0.0, 2 / 3], "ok", {}),
    # a lower-case last letter glued to the run: B 4 (one lower case), A 1
    ("BBBAb", TWO, [0.2, 0.8], "repaired", {"n_letters": 5}),
    # a word glued after the run: its capital is not a vote (C 2, B 1, A 2)
    ("CBAACProp", THREE, [0.4, 0.2, 0.4], "repaired", {"n_letters": 5}),
    # a word glued before the run: C 2, A 1, B 1
    ("EssentialCCAB", THREE, [0.25, 0.25, 0.5], "repaired", {}),
    # capitalised words only
    ("MajorMinorMa", THREE, None, "failed", {}),
    # an underscore inside the run separates letters: A 3, B 2
    ("ABBA_A", TWO, [0.6, 0.4], "ok", {}),
    # a pronoun before the answer: the block with option letters wins, not the first one
    ("I would say B", THREE, [0.0, 1.0, 0.0], "repaired", {"n_letters": 1, "invalid_letters": {}}),
]


@pytest.mark.parametrize(("text", "options", "expected", "status", "details"), SEQUENCE_CASES)
def test_parse_sequence(text, options, expected, status, details):
    parsed = parse_sequence(text, options)
    assert parsed.status == status, parsed.reason
    if expected is None:
        assert parsed.distribution is None
        assert parsed.reason
    else:
        assert parsed.distribution == pytest.approx(expected)
    for key, value in details.items():
        assert parsed.details[key] == value


VERBALIZED_CASES = [
    # the demonstrated format
    ("{'A': '12%', 'B': '1%', 'C': '55%', 'D': '32%'}", FOUR, [0.12, 0.01, 0.55, 0.32], "ok", 1.0),
    # keys out of order (Opus): values follow the keys, not the positions
    ("{'C': '54%', 'D': '41%', 'A': '4%', 'B': '1%'}", FOUR, [0.04, 0.01, 0.54, 0.41], "ok", 1.0),
    # double quotes, fractions
    ('{"A": 0.27, "B": 0.73}', TWO, [0.27, 0.73], "ok", 1.0),
    # bare fractions (Opus on GV)
    ("{'E': 0.4, 'C': 0.3, 'A': 0.2, 'D': 0.1}", FOUR + ["Not sure"], [0.2, 0.0, 0.3, 0.1, 0.4], "ok", 1.0),
    # unquoted keys (GPT-3.5 copying the demonstrations)
    ("{'A': '7%', 'B': '17%', C: '1%', 'D': '48%', E: '27%'}", FOUR + ["Not sure"], [0.07, 0.17, 0.01, 0.48, 0.27], "repaired", 1.0),
    # unquoted percentages
    ("{'A':35%,'B':15%,'C':45%,'D':5%}", FOUR, [0.35, 0.15, 0.45, 0.05], "repaired", 1.0),
    # trailing comma and trailing spaces are fine
    ("{'A': '32%', 'B': '15%', 'C': '53%',}  ", THREE, [0.32, 0.15, 0.53], "ok", 1.0),
    # trailing parenthesis (Llama) and a trailing note
    ("{'A': '25%', 'B': '12%', 'C': '33%', 'D': '30%'})", FOUR, [0.25, 0.12, 0.33, 0.30], "repaired", 1.0),
    ("{'A': '15%', 'B': '40%', 'C': '25%', 'D': '20%'}\n\n(Note: this is an estimate.)", FOUR, [0.15, 0.40, 0.25, 0.20], "repaired", 1.0),
    # multi-line dict
    ("{\n'A': '65%',\n'B': '25%',\n'C': '10%'\n}", THREE, [0.65, 0.25, 0.10], "ok", 1.0),
    # sums to 98%: renormalised, raw sum kept (0.26/0.98 etc.)
    ("{'A': '26%', 'B': '26%', 'C': '36%', 'D': '10%'}", FOUR, [26 / 98, 26 / 98, 36 / 98, 10 / 98], "ok", 0.98),
    # sums to 80%: beyond the tolerance, repaired
    ("{'A': '28%', 'B': '41%', 'C': '11%', 'D': '0%'}", FOUR, [0.35, 0.5125, 0.1375, 0.0], "repaired", 0.8),
    # a key beyond the options is ignored and counted
    ("{'A': '40%', 'B': '40%', 'C': '20%', 'D': '0%'}", THREE, [0.4, 0.4, 0.2], "repaired", 1.0),
    # option texts as keys, case and spacing ignored
    ('{"yes": "60%", "NO ": "30%", "Refused": "10%"}', THREE, [0.6, 0.3, 0.1], "ok", 1.0),
    # a non-numeric value (Haiku "Unknown") is dropped: 24% + 0% remain -> [1, 0, 0, 0]
    ("{'A': '24%', 'B': 'Unknown', 'C': 'Unknown', 'D': '0%'}", FOUR, [1.0, 0.0, 0.0, 0.0], "repaired", 0.24),
    # fractions as strings without a leading zero
    ("{'B':'.78','A':'.22'}", TWO, [0.22, 0.78], "ok", 1.0),
    # decimal percentages
    ("{'A': '5%', 'B': '94.5%', 'C': '0.5%'}", THREE, [0.05, 0.945, 0.005], "ok", 1.0),
    # plain numbers over 1 are percentages
    ("{'A': 27, 'B': 73}", TWO, [0.27, 0.73], "ok", 1.0),
    # a dict after prose, with the stray quote and percent of Llama ('5 '%)
    ("Here is my answer: {'A': '95%', 'B': '5 '%}", TWO, [0.95, 0.05], "repaired", 1.0),
    # no dict, only prose
    ("I cannot estimate how this group would respond.", TWO, None, "failed", None),
    # a dict of zeros
    ("{'A': '0%', 'B': '0%'}", TWO, None, "failed", 0.0),
    # an unclosed dict cut off by the token limit
    ("{'A': '50%', 'B': '30%', 'C': '2", THREE, [0.625, 0.375, 0.0], "repaired", 0.8),
    # no braces at all, one pair a line
    ("A: 70%\nB: 30%", TWO, [0.7, 0.3], "repaired", 1.0),
]


@pytest.mark.parametrize(("text", "options", "expected", "status", "raw_sum"), VERBALIZED_CASES)
def test_parse_verbalized(text, options, expected, status, raw_sum):
    parsed = parse_verbalized(text, options)
    assert parsed.status == status, parsed.reason
    if expected is None:
        assert parsed.distribution is None and parsed.reason
    else:
        assert parsed.distribution == pytest.approx(expected)
        assert sum(parsed.distribution) == pytest.approx(1.0)
    if raw_sum is not None:
        assert parsed.details["raw_sum"] == pytest.approx(raw_sum)


def test_verbalized_counts_unknown_keys_and_bad_values():
    parsed = parse_verbalized("{'A': '40%', 'B': 'lots', 'Z': '60%'}", TWO)
    assert parsed.details["unknown_keys"] == ["Z"]
    assert parsed.details["invalid_values"] == ["'lots'"]
    assert parsed.distribution == [1.0, 0.0]


def test_verbalized_never_evaluates_code():
    parsed = parse_verbalized("{'A': __import__('os').getcwd(), 'B': '100%'}", TWO)
    assert parsed.distribution == [0.0, 1.0]


LOG = math.log


@pytest.mark.parametrize(
    ("top", "options", "expected", "covered"),
    [
        # variants of one letter merge: A = 0.5 + 0.1 + 0.1, B = 0.2; covered 0.9
        ([("A", LOG(0.5)), (" A", LOG(0.1)), ("a", LOG(0.1)), ("B", LOG(0.2)), ("The", LOG(0.05))], TWO, [0.7 / 0.9, 0.2 / 0.9], 0.9),
        # dict form, a letter beyond the options ignored
        ({"C": LOG(0.25), "B": LOG(0.25), "D": LOG(0.5)}, THREE, [0.0, 0.5, 0.5], 0.5),
        # punctuation around letters and -inf log-probs
        ([("A.", LOG(0.3)), ("(B", LOG(0.3)), ("C", float("-inf"))], THREE, [0.5, 0.5, 0.0], 0.6),
    ],
)
def test_parse_logprobs(top, options, expected, covered):
    parsed = parse_logprobs(top, options)
    assert parsed.status == "ok"
    assert parsed.distribution == pytest.approx(expected)
    assert parsed.details["covered_mass"] == pytest.approx(covered)


@pytest.mark.parametrize("top", [[], None, [("Sure", -0.1), ("I", -2.0)], [("A", float("nan"))], 42, [("A",)]])
def test_parse_logprobs_failures(top):
    parsed = parse_logprobs(top, TWO)
    assert parsed.status == "failed" and parsed.distribution is None and parsed.reason


def test_parse_response_dispatches_and_rejects_unknown_methods():
    assert parse_response("verbalize", "{'B': '100%'}", TWO) == Parsed([0.0, 1.0], "ok", "", parse_verbalized("{'B': '100%'}", TWO).details)
    assert parse_response("logprobs", [("B", 0.0)], TWO).distribution == [0.0, 1.0]
    with pytest.raises(ValueError, match="no parser"):
        parse_response("telepathy", "A", TWO)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="empty"):
        parse_sequence("A", [])
    with pytest.raises(ValueError, match="Z"):
        parse_sequence("A", [str(i) for i in range(27)])


@pytest.mark.parametrize("junk", [None, 3.5, b"AB", ["A"], {"A": 1}])
def test_never_raise_on_odd_types(junk):
    for parser in (parse_sequence, parse_verbalized):
        assert parser(junk, TWO).status == "failed"
