"""A tiny local causal LM for tests: a few-layer Llama with a tokenizer trained on the spot.

Nothing is downloaded. :func:`build_tiny_model` trains a byte-level BPE tokenizer
on a small built-in corpus (so option letters, " A" ... " L", are single tokens),
wraps it with a chat template, builds a randomly initialised ``LlamaForCausalLM``
and saves both, so tests exercise the real ``from_pretrained`` loading path.
:func:`build_unigram_model` saves a model whose next-token distribution is
fixed by hand, for tests that need parseable generations with known odds.

The session fixtures ``tiny_model_dir`` and ``tiny_plain_model_dir`` are made
available to every test module by ``tests/conftest.py``.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any
from typing import Sequence

import pytest

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# Each turn ends with a newline, and so does the generation prompt: the answer's
# first token is a letter without a leading space.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_LETTERS = string.ascii_uppercase[:12]
_CORPUS = [
    " ".join(_LETTERS),
    ", ".join(f'"{letter}": {n}' for letter, n in zip(_LETTERS, range(5, 100, 7))),
    "Question: Do you think the government should do more? Options: A. Yes B. No Answer: A",
    "Book title: Summary: Genre: Author: How likely are you to read this book? Very unlikely Likely",
    "Here is a multiple-choice survey question. Reply with the single letter of the option.",
    "Imagine asking 30 different people this question. Write down their 30 answers as option letters.",
    "Estimate what share of people would pick each option. Reply with only a JSON object percentages.",
    "Democrats Republicans men women Black White adults in the United States people living in",
    "Answers: Percentages: Example answer: How the group actually answered: Now the question to answer.",
]


def toy_rows(n_questions: int = 3, *, dataset: str = "opinionqa_subset") -> list[dict]:
    """Hand-made benchmark rows (interfaces.md shape) for two groups, with 5 few-shot neighbours each (and book fields for NYT)."""
    rows = []
    for q in range(n_questions):
        options = ["Yes", "No", "Not sure", "Refused"][: 2 + q % 3]
        for g, group in enumerate(("Democrat", "Republican")):
            neighbours = [
                {
                    "question_id": f"n{q}{k}",
                    "question": f"Related question {k} about topic {q}?",
                    "options": ["Agree", "Disagree", "Neither"][: 2 + k % 2],
                    "distribution": [0.5, 0.5] if k % 2 == 0 else [0.2 + 0.1 * g, 0.5, 0.3 - 0.1 * g],
                }
                for k in range(5)
            ]
            book = {"title": f"Book {q}", "author": "A. Writer", "genre": "Fiction", "summary": "A family story."}
            if dataset == "nyt_books":
                neighbours = [n | book for n in neighbours]
            rows.append(
                {
                    "id": f"q{q}/{group}",
                    "dataset": dataset,
                    "question_id": f"q{q}",
                    "question": "Should the government do more? " + "Think it over. " * q,
                    "options": options,
                    "distribution": [1.0 / len(options)] * len(options),
                    "group_attribute": "POLPARTY",
                    "group": group,
                    "few_shot": neighbours,
                }
                | (book if dataset == "nyt_books" else {})
            )
    return rows


def build_tokenizer(vocab_size: int = 512, *, chat_template: bool = True, extra_tokens: Sequence[str] = ()) -> Any:
    """A byte-level BPE tokenizer trained on the built-in corpus (letters and " A" ... " L" are single tokens)."""
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE if chat_template else None,
    )
    tokenizer.add_tokens(list(extra_tokens))
    return tokenizer


def _config(tokenizer: Any, hidden_size: int, num_layers: int, initializer_range: float, **extra: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **extra,
    )


def build_tiny_model(
    folder: str | Path,
    *,
    seed: int = 0,
    chat_template: bool = True,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    initializer_range: float = 0.2,
) -> Path:
    """Save a random tiny Llama model and its freshly trained tokenizer in ``folder``; returns it.

    ``initializer_range`` is large (0.2) so that next-token distributions are far
    from uniform and numerical differences show up in tests.
    """
    import torch
    from transformers import LlamaForCausalLM

    folder = Path(folder)
    tokenizer = build_tokenizer(vocab_size, chat_template=chat_template)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_config(tokenizer, hidden_size, num_layers, initializer_range))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_unigram_model(folder: str | Path, token_logits: dict[str, float], *, seed: int = 0, chat_template: bool = True) -> Path:
    """Save a tiny Llama whose next-token logits are ``token_logits`` (0 for every other token) whatever the context.

    Every weight is zero except the embeddings and one attention output bias,
    which adds a huge constant vector to the residual stream; after the final
    norm that vector alone reaches the output layer, whose column 0 is set to
    give the requested logits. A key of ``token_logits`` longer than a letter
    is added to the vocabulary as one token. A model with known output
    probabilities lets tests check sampling and parsing end to end.
    """
    import torch
    from transformers import LlamaForCausalLM

    folder = Path(folder)
    tokenizer = build_tokenizer(512, chat_template=chat_template, extra_tokens=[t for t in token_logits if len(t.strip()) > 1])
    config = _config(tokenizer, 64, 1, 0.02, attention_bias=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "embed_tokens" not in name and "norm" not in name:
                parameter.zero_()
        model.model.layers[0].self_attn.o_proj.bias[0] = 1e4
        for token, logit in token_logits.items():
            ids = tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"{token!r} is not a single token: {ids}")
            # The normed residual is about sqrt(hidden) along dimension 0.
            model.lm_head.weight[ids[0], 0] = logit / config.hidden_size**0.5
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama with a chat template, saved once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of model without a chat template (prompts go in as plain text)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-plain"), chat_template=False)
