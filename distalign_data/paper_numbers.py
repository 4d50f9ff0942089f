"""The paper's published numbers that ``distalign reproduce`` compares against, in one table.

Each entry: ``(table, dataset, steering, model, method) -> (mean, half_width, note)``
with the paper's table id (``1a``, ``1b``, ``2``, ``4``, ``8``, ``9``, ``10``), the
dataset and steering labels of :mod:`distalign_data.scoring`, the upstream model
folder names (``baseline`` / ``humans`` for those rows), the published mean (for
Table 1b the KS gap as a fraction, not in percent) and "±" where the paper gives
one. ``note`` is set where the published number is known not to come out of the
released outputs (protocol notes, sections 6, 8 and 8b); the report shows it as
the reason for a flag.
"""

from __future__ import annotations

ALL = "all"
HEADLINE = "persona+few_shot"

_NOTE_OQA_NO_STEERING = (
    "paper's no-steering OpinionQA letters were compared with options rebuilt from the comma-split MC_options "
    "(protocol 8.1); the stored vectors give the prompt-aligned value"
)
_NOTE_BASELINE_REFERENCES = "paper's OpinionQA baselines used the comma-split MC_options references (protocol 8.1)"
_NOTE_DISCRETIZATION = (
    "paper's discretization loop stopped at the first all-zero OpinionQA reference (40 / 15 questions, protocol 6)"
)

PUBLISHED: dict[tuple[str, str, str, str, str], tuple[float, float | None, str | None]] = {
    # Table 1a: persona + few-shot, three datasets weighted 1/3.
    ("1a", ALL, HEADLINE, "anthropic_opus", "verbalize"): (0.226, 0.006, None),
    ("1a", ALL, HEADLINE, "gpt-4", "verbalize"): (0.229, 0.006, None),
    ("1a", ALL, HEADLINE, "llama3-70b", "verbalize"): (0.244, 0.006, None),
    ("1a", ALL, HEADLINE, "anthropic_haiku", "verbalize"): (0.254, 0.007, None),
    ("1a", ALL, HEADLINE, "gpt-4", "temperature_scaled_logprobs"): (0.273, 0.006, None),
    ("1a", ALL, HEADLINE, "gpt-4", "sequence"): (0.278, 0.008, None),
    ("1a", ALL, HEADLINE, "gpt-3.5-turbo-0125", "verbalize"): (0.291, 0.007, None),
    ("1a", ALL, HEADLINE, "gpt-3.5-turbo-0125", "temperature_scaled_logprobs"): (0.296, 0.006, None),
    ("1a", ALL, HEADLINE, "anthropic_haiku", "sequence"): (0.309, 0.006, None),
    ("1a", ALL, HEADLINE, "gpt-3.5-turbo-0125", "sequence"): (0.318, 0.007, None),
    ("1a", ALL, HEADLINE, "anthropic_opus", "sequence"): (0.325, 0.007, None),
    ("1a", ALL, HEADLINE, "llama3-70b", "sequence"): (0.328, 0.008, None),
    ("1a", ALL, HEADLINE, "gpt-3.5-turbo-0125", "logprobs"): (0.455, 0.008, None),
    ("1a", ALL, HEADLINE, "llama3-70b", "temperature_scaled_logprobs"): (0.469, 0.009, None),
    ("1a", ALL, HEADLINE, "llama3-70b", "logprobs"): (0.495, 0.008, None),
    ("1a", ALL, HEADLINE, "gpt-4", "logprobs"): (0.550, 0.008, None),
    ("1a", ALL, HEADLINE, "baseline", "discretization"): (0.115, 0.004, _NOTE_DISCRETIZATION),
    ("1a", ALL, HEADLINE, "baseline", "uniform"): (0.363, 0.007, _NOTE_BASELINE_REFERENCES),
    ("1a", ALL, HEADLINE, "baseline", "majority"): (
        0.712, 0.013, _NOTE_BASELINE_REFERENCES + "; one-hot on GPT-3.5's mode, not the human mode (protocol 6)"),
    # Table 1b: KS gap = A(sequence)/A(verbalize) - 1, as a fraction.
    ("1b", ALL, HEADLINE, "gpt-3.5-turbo-0125", "sequence"): (0.0917, None, None),
    ("1b", ALL, HEADLINE, "gpt-4", "sequence"): (0.2135, None, None),
    ("1b", ALL, HEADLINE, "anthropic_haiku", "sequence"): (0.2149, None, None),
    ("1b", ALL, HEADLINE, "llama3-70b", "sequence"): (0.3465, None, None),
    ("1b", ALL, HEADLINE, "anthropic_opus", "sequence"): (0.4363, None, None),
    # Table 2: OpinionQA and NYT weighted 1/2 each.
    ("2", "opinionqa+nytimes", HEADLINE, "humans", "verbalize"): (
        0.250, 0.004,
        "the released exports give about 0.2466; no variant of the estimate reaches the published 0.250 (protocol 8b)"),
    # Table 10 (OpinionQA / NYT by steering) and Tables 4 / 8 (GV): the values protocol.md records.
    ("10", "opinionqa", "none", "gpt-4", "verbalize"): (0.400, None, _NOTE_OQA_NO_STEERING),
    ("10", "opinionqa", "none", "llama3-70b", "sequence"): (0.501, None, _NOTE_OQA_NO_STEERING),
    ("10", "nytimes", "persona", "gpt-3.5-turbo-0125", "temperature_scaled_logprobs"): (
        0.295, None, "paper misprint: the upstream leaderboard gives 0.244, which fits the row's rank (protocol 8.8)"),
    ("10", "nytimes", "none", "baseline", "majority"): (
        0.700, None, "paper vs upstream leaderboard (0.711) artefact (protocol 8.8)"),
    ("4", "globalvalues", HEADLINE, "gpt-3.5-turbo-0125", "temperature_scaled_logprobs"): (
        0.381, None, "paper vs upstream leaderboard (0.376) artefact (protocol 8.8)"),
    ("8", "globalvalues", "persona", "gpt-3.5-turbo-0125", "temperature_scaled_logprobs"): (
        0.428, None, "paper vs upstream leaderboard (0.421) artefact (protocol 8.8)"),
}

# How close the ``paper`` recomputation must come to a published mean (Table 1b in KS-gap units).
TOLERANCE = {"1a": 0.002, "1b": 0.005}
DEFAULT_TOLERANCE = 0.002


def paper_table(dataset: str, steering: str) -> str:
    """The paper's table id for a per-dataset, per-steering leaderboard (``dataset`` when it has none).

    >>> paper_table("globalvalues", "persona"), paper_table("nytimes", "few_shot")
    ('8', '10')
    """
    if dataset == "globalvalues":
        return {HEADLINE: "4", "persona": "8", "few_shot": "9"}.get(steering, "dataset")
    if dataset in ("opinionqa", "nytimes") and steering in ("none", "persona", "few_shot"):
        return "10"
    return "dataset"
