"""A tiny local causal LM for tests: a few-layer Llama with a tokenizer trained on the spot.

Nothing is downloaded. :func:`build_tiny_model` trains a byte-level BPE tokenizer
on a small built-in corpus (so option letters, " A" ... " L", are single tokens),
wraps it with a chat template, builds a randomly initialised ``LlamaForCausalLM``
and saves both, so tests exercise the real ``from_pretrained`` loading path.
:func:`train_tiny_model` teaches a saved model fixed completions of given
prompts (a few seconds on CPU), for tests that need parseable generations.

Use the session fixtures in a test module::

    from tests.tiny_model_helpers import tiny_model_dir  # noqa: F401  (pytest fixture)
"""

from __future__ import annotations

import string
from pathlib import Path
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
    import tokenizers
    import torch
    from transformers import LlamaConfig
    from transformers import LlamaForCausalLM
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
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
    config = LlamaConfig(
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
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_tiny_model(folder: str | Path, examples: Sequence[tuple[str, str]], *, steps: int = 150, seed: int = 0) -> Path:
    """Teach the saved model in ``folder`` to continue each prompt text with its completion (+ EOS); saves in place.

    Only the completion tokens are trained, with a high learning rate: the model
    learns these few examples by heart.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import AutoTokenizer

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    sequences = []
    for prompt, completion in examples:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append((prompt_ids + completion_ids, [-100] * len(prompt_ids) + completion_ids))
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(ids)) + ids for ids, _ in sequences])
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in sequences])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(ids) for ids, _ in sequences])[:, None]).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama with a chat template, saved once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of model without a chat template (prompts go in as plain text)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-plain"), chat_template=False)
