"""Throughput of the transformers runner against bare ``transformers`` calls on the same prompts.

A randomly initialised Llama-shaped model of about 60M parameters (vocabulary
32,000, so that compute rather than bookkeeping dominates) is built on the spot.
The prompts are the persona prompts of hand-made benchmark rows, rendered through
the model's chat template. Printed ratios (higher is better for the runner):

(a) log-probs: a bare forward pass over the same pre-tokenised, length-sorted,
    left-padded batches that computes the last position's logits only, divided
    by the runner's time for the whole ``run()`` (prompts, parsing, records);
    target >= 0.8;
(b) log-probs: one ``generate(max_new_tokens=1, output_scores=True)`` call per
    prompt (the paper's way) divided by the runner; target >= 1.0 on CPU,
    >= 10 on a GPU;
(c) sequence: bare batched ``model.generate`` (sampling, same batches, same
    number of new tokens) divided by the runner's sequence ``run()``; target >= 0.8.

Run from the repository root: ``python benchmarks/bench_hf_runner.py [--device cuda]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distalign_data.model_runners.base import get_backend  # noqa: E402
from distalign_data.model_runners.base import run  # noqa: E402
from distalign_data.prompts import render_prompt  # noqa: E402
from tests.tiny_model_helpers import build_tokenizer  # noqa: E402
from tests.tiny_model_helpers import toy_rows  # noqa: E402


def build_model(folder: Path) -> int:
    """Save a random ~60M-parameter Llama (vocabulary 32,000) with a small trained tokenizer; returns the parameter count."""
    import torch
    from transformers import LlamaConfig
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer(512)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def sorted_batches(prompt_ids: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    ordered = sorted(prompt_ids, key=len, reverse=True)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def left_padded(batch: list[list[int]], pad: int, device: str):
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
    return input_ids, mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 on a GPU (default: float32)")
    parser.add_argument("--questions", type=int, default=None, help="questions (2 rows each); default 8 on CPU, 256 on a GPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 on CPU, 64 on a GPU")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per sequence prompt")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the best time counts")
    args = parser.parse_args(argv)

    import torch

    gpu = args.device.startswith("cuda")
    questions = args.questions or (256 if gpu else 8)
    batch_size = args.batch_size or (64 if gpu else 8)
    folder = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    n_params = build_model(folder)
    backend = get_backend(f"hf:{folder}", batch_size=batch_size, device=args.device, dtype=args.dtype, max_new_tokens=args.new_tokens)
    model, tokenizer = backend.model, backend.tokenizer
    rows = toy_rows(questions)
    prompt_ids = [
        tokenizer(backend.prompt_string(render_prompt(row, "logprobs", "persona", seed=0)), add_special_tokens=False)["input_ids"]
        for row in rows
    ]
    batches = sorted_batches(prompt_ids, batch_size)
    tokens = sum(map(len, prompt_ids))
    print(f"model: {n_params / 1e6:.1f}M parameters, vocabulary 32000, {backend.dtype_name}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"prompts: {len(prompt_ids)} ({tokens} tokens, {min(map(len, prompt_ids))}-{max(map(len, prompt_ids))} each), batch size {batch_size}")

    def runner(method: str) -> None:
        with tempfile.TemporaryDirectory() as run_dir:
            run(backend, rows, methods=[method], steerings=["persona"], run_dir=run_dir, seed=0, progress=False)

    def bare_forward() -> None:
        with torch.inference_mode():
            for batch in batches:
                input_ids, mask = left_padded(batch, tokenizer.pad_token_id, args.device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits.float().log_softmax(-1)

    def per_prompt_generate() -> None:
        with torch.inference_mode():
            for ids in prompt_ids:
                input_ids = torch.tensor([ids], device=args.device)
                model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=1, do_sample=False,
                    output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

    def bare_generate() -> None:
        with torch.inference_mode():
            for batch in batches:
                input_ids, mask = left_padded(batch, tokenizer.pad_token_id, args.device)
                model.generate(
                    input_ids=input_ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

    # Warm-up: first calls pay for lazy initialisation.
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt_ids[0]], device=args.device), logits_to_keep=1)
    # Interleaved repeats, best of each: the machine is shared, so the minimum is the least disturbed.
    timings: dict[str, float] = {}
    for pair in (
        [("runner logprobs", lambda: runner("logprobs")), ("bare last-position forward", bare_forward),
         ("per-prompt generate(1 token)", per_prompt_generate)],
        [("runner sequence", lambda: runner("sequence")), ("bare batched generate", bare_generate)],
    ):  # fmt: skip
        for _ in range(args.repeats):
            for name, fn in pair:
                timings[name] = min(timings.get(name, float("inf")), timed(args.device, fn))
    for name, seconds in timings.items():
        print(f"  {name:32s} {seconds:8.2f} s (best of {args.repeats})")
    ratios = {
        "(a) bare forward / runner logprobs": timings["bare last-position forward"] / timings["runner logprobs"],
        "(b) per-prompt generate / runner logprobs": timings["per-prompt generate(1 token)"] / timings["runner logprobs"],
        "(c) bare generate / runner sequence": timings["bare batched generate"] / timings["runner sequence"],
    }
    targets = {"(a)": 0.8, "(b)": 10.0 if gpu else 1.0, "(c)": 0.8}
    for name, value in ratios.items():
        target = targets[name[:3]]
        print(f"{name:44s} {value:6.2f}  (target >= {target}: {'met' if value >= target else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
