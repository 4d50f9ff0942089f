"""The one table of canonical names (see the glossary in the project docs).

Every module that needs a dataset, method or steering name imports it from here,
so a name is spelled once.
"""

from __future__ import annotations

# Canonical dataset name -> the folder name the paper's released outputs use.
DATASET_TO_PAPER = {
    "opinionqa_subset": "opinionqa",
    "global_opinionqa_contentious": "globalvalues",
    "nyt_books": "nytimes",
}
PAPER_TO_DATASET = {paper: name for name, paper in DATASET_TO_PAPER.items()}
DATASETS = tuple(DATASET_TO_PAPER)

# Groups scored in the paper's headline tables, per dataset (GlobalOpinionQA's
# groups are the countries listed for each question).
GROUPS = {
    "opinionqa_subset": {
        "POLPARTY": ("Democrat", "Republican"),
        "SEX": ("Male", "Female"),
        "RACE": ("Black", "White"),
    },
    "nyt_books": {
        "POLPARTY": ("Democrat", "Republican"),
        "SEX": ("Male", "Female"),
    },
}

EXPRESSION_METHODS = ("logprobs", "sequence", "verbalize")
DERIVED_METHODS = ("temperature_scaled_logprobs",)
# Expression method -> the folder name in the paper's released outputs.
METHOD_TO_PAPER = {
    "logprobs": "model_logprobs",
    "temperature_scaled_logprobs": "rescaled_model_logprobs",
    "sequence": "sequence",
    "verbalize": "express_distribution",
}

STEERING_METHODS = ("none", "persona", "few_shot")
# Steering method -> the paper's task folder name.
STEERING_TO_PAPER = {"none": "task0", "persona": "task1", "few_shot": "task3_easy_hard"}

PROTOCOLS = ("paper", "corrected")
PARSE_STATUSES = ("ok", "repaired", "failed")

# The models whose outputs the paper released (upstream folder names) and the
# short labels its tables use.
PAPER_MODELS = {
    "anthropic_opus": "Opus",
    "gpt-4": "GPT-4",
    "llama3-70b": "Llama-3-70B",
    "anthropic_haiku": "Haiku",
    "gpt-3.5-turbo-0125": "GPT-3.5",
}
