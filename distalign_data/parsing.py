"""Response parsers: raw model output -> a distribution over the prompt's options.

One parser per expression method. Each returns a :class:`Parsed` whose
``distribution`` is aligned with ``options`` (the order the prompt showed them:
letter i meant ``options[i]``), renormalised to sum to 1, or None when nothing
usable was found. ``status`` is ``ok`` (the output followed the requested
format), ``repaired`` (usable after a documented repair, listed in ``reason``)
or ``failed``. Parsers never raise on model output and never evaluate it as code:
the verbalised parser is a small tolerant scanner, not ``eval``.

>>> parse_sequence("Answer: A B B A", ["yes", "no"]).distribution
[0.5, 0.5]
>>> parse_verbalized("{'A': '30%', B: '70%'}", ["yes", "no"]).status
'repaired'
>>> import math
>>> p = parse_logprobs([("A", math.log(0.6)), (" a", math.log(0.2)), ("B", math.log(0.1))], ["yes", "no"])
>>> [round(x, 3) for x in p.distribution], round(p.details["covered_mass"], 3)
([0.889, 0.111], 0.9)
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
import unicodedata
from typing import Any, Iterable, Mapping, Sequence

# Absolute deviation of a verbalised distribution's raw sum from 1 that still
# counts as following the format (models round each percentage).
SUM_TOLERANCE = 0.02

_ANSWER_PREFIX = re.compile(r"^.*?\banswer\s*:\s*", re.IGNORECASE | re.DOTALL)
_NON_LETTERS = re.compile(r"[^A-Za-z]+")
_CASE_RUNS = re.compile(r"[A-Z]+|[a-z]+")
_PAIR = re.compile(
    r"""(?P<key>'[^'\n]*'|"[^"\n]*"|[A-Za-z0-9][^:'"{},\n]*?)\s*:\s*"""
    r"""(?P<value>'[^'\n]*'\s*%?|"[^"\n]*"\s*%?|[-+]?(?:\d+\.?\d*|\.\d+)\s*%?)"""
)
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")


@dataclasses.dataclass
class Parsed:
    """A parser's outcome: ``distribution`` aligned with the options, or None when failed."""

    distribution: list[float] | None
    status: str
    reason: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def option_letters(options: Sequence[str]) -> str:
    """The letters a prompt gives ``options`` (A, B, ...); ValueError beyond 26."""
    if len(options) == 0:
        raise ValueError("options is empty: a question needs at least one option")
    if len(options) > len(string.ascii_uppercase):
        raise ValueError(f"options has {len(options)} entries; letters only go to Z")
    return string.ascii_uppercase[: len(options)]


def _normalised(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]


def _failed(reason: str, details: dict[str, Any]) -> Parsed:
    return Parsed(None, "failed", reason, details)


def _status(repairs: list[str]) -> tuple[str, str]:
    return ("repaired", "; ".join(repairs)) if repairs else ("ok", "")


# ---------------------------------------------------------------------------
# sequence


def _pieces(body: str, letters: str) -> list[tuple[str, bool]]:
    """Split text into letter pieces and mark which are answer letters.

    Chunks between non-letters are split at case changes. A capital that starts
    a lower-case word ("Here", "Ma", the "P" of "...CCProp") belongs to the word; other runs of capitals ("CCDB") are votes; a lower-case piece is a
    vote when it is a single letter or a long run of option letters ("ccdba"),
    since short runs are too often words ("bad", "cab").
    """
    out: list[tuple[str, bool]] = []
    for chunk in _NON_LETTERS.split(body):
        runs = _CASE_RUNS.findall(chunk)
        in_word = False
        for i, run in enumerate(runs):
            following = runs[i + 1] if i + 1 < len(runs) else ""
            # "Ma", "Prop": the capital starts a word; "BBBBb": a lower-case vote after the run.
            starts_word = following.islower() and (len(following) >= 2 or len(run) == 1)
            if run.isupper():
                if starts_word:
                    if len(run) > 1:
                        out.append((run[:-1], True))
                    out.append((run[-1], False))
                else:
                    out.append((run, True))
                in_word = starts_word
            else:
                vote = not in_word and (len(run) == 1 or (len(run) >= 5 and set(run.upper()) <= set(letters)))
                out.append((run, vote))
                in_word = False
    return out


def parse_sequence(text: str, options: Sequence[str]) -> Parsed:
    """Distribution from a sequence of sampled answer letters (one letter = one vote).

    Tolerates separators (spaces, commas, newlines), a leading "Answer:", quotes,
    lower case and unseparated runs ("CCDB"). When prose surrounds the letters,
    the longest contiguous run of letter tokens is used. Letters beyond the
    options are counted in ``details["invalid_letters"]`` and ignored.

    >>> p = parse_sequence("answer: 'a', 'b', 'e', 'a'", ["x", "y", "z"])
    >>> p.distribution, p.status, p.details["invalid_letters"]
    ([0.6666666666666666, 0.3333333333333333, 0.0], 'repaired', {'E': 1})
    """
    letters = option_letters(options)
    details: dict[str, Any] = {"n_letters": 0, "invalid_letters": {}}
    if not isinstance(text, str) or not text.strip():
        return _failed("empty response", details)
    # NFKC folds full-width letters ("Ｂ") that some models emit into ASCII.
    body = _ANSWER_PREFIX.sub("", unicodedata.normalize("NFKC", text), count=1)
    pieces = _pieces(body, letters)
    tokens = [text for text, _ in pieces]
    is_vote = [vote for _, vote in pieces]
    # The contiguous block of letter tokens with the most option letters (then
    # the most letters) is the answer; letters inside surrounding prose ("a
    # Democrat") are not votes, and a pronoun "I" does not outrank the "B" of
    # "I would say B".
    best, start, best_span = (0, 0), None, (0, 0)
    for i, vote in enumerate(is_vote + [False]):
        if vote and start is None:
            start = i
        elif not vote and start is not None:
            chars = "".join(tokens[start:i])
            size = (sum(c in letters for c in chars.upper()), len(chars))
            if size > best:
                best, best_span = size, (start, i)
            start = None
    block = tokens[best_span[0] : best_span[1]]
    repairs = []
    if len(block) < len(tokens):
        repairs.append("ignored text around the letters")
    chars = "".join(block)
    if any(c.islower() for c in chars):
        repairs.append("lower-case letters")
    counts = dict.fromkeys(letters, 0)
    invalid: dict[str, int] = {}
    for char in chars.upper():
        if char in counts:
            counts[char] += 1
        else:
            invalid[char] = invalid.get(char, 0) + 1
    details["invalid_letters"] = invalid
    details["n_letters"] = sum(counts.values())
    if invalid:
        repairs.append(f"{sum(invalid.values())} letters outside A-{letters[-1]} ignored")
    if details["n_letters"] == 0:
        return _failed("no answer letters found" if not chars else f"no letters in A-{letters[-1]}", details)
    status, reason = _status(repairs)
    return Parsed(_normalised([float(counts[c]) for c in letters]), status, reason, details)


# ---------------------------------------------------------------------------
# verbalised


def _key_text(raw: str) -> tuple[str, bool]:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1].strip(), True
    return raw, False


def _value_number(raw: str) -> tuple[float | None, bool, bool]:
    """(number, had a percent sign, was quoted) of one dict value; number None if not numeric."""
    raw = raw.strip()
    percent = raw.endswith("%")
    if percent:
        raw = raw[:-1].strip()
    inner, quoted = _key_text(raw)
    if inner.endswith("%"):
        percent, inner = True, inner[:-1].strip()
    if not _NUMBER.match(inner):
        return None, percent, quoted
    return float(inner), percent, quoted


def _canonical(text: str) -> str:
    return " ".join(text.casefold().split())


def parse_verbalized(text: str, options: Sequence[str]) -> Parsed:
    """Distribution from a verbalised dict of probabilities (``{'A': '27%', ...}``).

    Keys may be option letters or option texts, quoted or not; values may be
    percentages (``'27%'``, ``27%``) or fractions (``0.27``, ``'.27'``); plain
    numbers summing to more than 1.5 are read as percentages. Text before or
    after the dict is ignored. The result is renormalised; the sum before
    renormalising is ``details["raw_sum"]``. Options the dict leaves out get 0.

    >>> p = parse_verbalized('Sure! {"A": 0.2, "no": 0.6} hope that helps', ["yes", "no"])
    >>> [round(x, 2) for x in p.distribution], p.status, p.details["raw_sum"]
    ([0.25, 0.75], 'repaired', 0.8)
    """
    letters = option_letters(options)
    details: dict[str, Any] = {"raw_sum": None, "unknown_keys": [], "invalid_values": []}
    if not isinstance(text, str) or not text.strip():
        return _failed("empty response", details)
    repairs = []
    open_at = text.find("{")
    if open_at < 0:
        body = text
        repairs.append("no braces")
    else:
        close_at = text.find("}", open_at)
        body = text[open_at + 1 : close_at if close_at >= 0 else len(text)]
        if close_at < 0:
            repairs.append("unclosed dict")
        outside = (text[:open_at] + (text[close_at + 1 :] if close_at >= 0 else "")).strip()
        if outside:
            repairs.append("ignored text around the dict")
    by_text = {_canonical(option): i for i, option in enumerate(options)}
    values: dict[int, float] = {}
    percents: list[bool] = []
    for match in _PAIR.finditer(body):
        key, key_quoted = _key_text(match.group("key"))
        if key.upper() in letters and len(key) == 1:
            index = letters.index(key.upper())
        elif _canonical(key) in by_text:
            index = by_text[_canonical(key)]
        else:
            details["unknown_keys"].append(key)
            continue
        if not key_quoted and "unquoted keys" not in repairs:
            repairs.append("unquoted keys")
        number, percent, quoted = _value_number(match.group("value"))
        if number is None or number < 0 or not math.isfinite(number):
            details["invalid_values"].append(match.group("value").strip())
            continue
        if percent and not quoted and "unquoted percentages" not in repairs:
            repairs.append("unquoted percentages")
        if index in values:
            repairs.append(f"duplicate key {key!r}")
        values[index] = number
        percents.append(percent)
    if details["unknown_keys"]:
        repairs.append(f"{len(details['unknown_keys'])} unknown keys ignored")
    if details["invalid_values"]:
        repairs.append(f"{len(details['invalid_values'])} non-numeric values ignored")
    if not values:
        return _failed("no option: probability pairs found", details)
    if any(percents) or sum(values.values()) > 1.5:
        values = {i: v / 100.0 for i, v in values.items()}
    raw_sum = sum(values.values())
    details["raw_sum"] = round(raw_sum, 10)
    if raw_sum <= 0:
        return _failed("probabilities sum to 0", details)
    if abs(raw_sum - 1.0) > SUM_TOLERANCE + 1e-9:
        repairs.append(f"renormalised from a sum of {raw_sum:.4g}")
    status, reason = _status(repairs)
    return Parsed(_normalised([values.get(i, 0.0) for i in range(len(options))]), status, reason, details)


# ---------------------------------------------------------------------------
# log-probabilities


def _pairs(top_logprobs: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(top_logprobs, Mapping):
        return top_logprobs.items()
    return top_logprobs


def parse_logprobs(top_logprobs: Any, options: Sequence[str]) -> Parsed:
    """Distribution from the top-k (token, log-probability) pairs at the answer position.

    Token variants of one letter (``"A"``, ``" A"``, ``"a"``, ``"A."``) are merged;
    other tokens are ignored. The mass on option letters is renormalised and
    recorded as ``details["covered_mass"]``. Accepts a list of pairs or a dict
    token -> log-probability.

    >>> import math
    >>> parse_logprobs({"Hello": 0.0}, ["x", "y"]).status
    'failed'
    """
    letters = option_letters(options)
    details: dict[str, Any] = {"covered_mass": 0.0, "n_tokens": 0}
    mass = dict.fromkeys(letters, 0.0)
    try:
        pairs = list(_pairs(top_logprobs or []))
    except TypeError:
        return _failed("top_logprobs is not a list of (token, logprob) pairs", details)
    for pair in pairs:
        try:
            token, logprob = pair
            logprob = float(logprob)
        except (TypeError, ValueError):
            continue
        details["n_tokens"] += 1
        if not isinstance(token, str) or math.isnan(logprob):
            continue
        letter = token.strip().strip("'\"().:").upper()
        if letter in mass:
            mass[letter] += math.exp(min(logprob, 0.0))
    covered = sum(mass.values())
    details["covered_mass"] = covered
    if covered <= 0:
        return _failed("no option letter among the top tokens", details)
    return Parsed(_normalised([mass[c] for c in letters]), "ok", "", details)


_PARSERS = {"sequence": parse_sequence, "verbalize": parse_verbalized, "logprobs": parse_logprobs}


def parse_response(method: str, raw: Any, options: Sequence[str]) -> Parsed:
    """Dispatch to the parser of an expression method (``raw`` = text, or top log-probs for ``logprobs``).

    >>> parse_response("sequence", "B B B", ["x", "y"]).distribution
    [0.0, 1.0]
    """
    try:
        parser = _PARSERS[method]
    except KeyError:
        raise ValueError(f"method {method!r} has no parser; expected one of {sorted(_PARSERS)}") from None
    return parser(raw, options)
