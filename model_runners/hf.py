"""Local models through ``transformers`` (and ``accelerate launch`` for data parallel).

* ``logprobs``: one forward pass per prompt that asks for the last position's
  logits only (``logits_to_keep=1``), log-softmax over the whole vocabulary, then
  the option-letter tokens are read off. Which letter token is the answer depends
  on how the prompt ends: after whitespace (a chat template's generation prompt
  ends with a newline) the bare letter ``"A"``, otherwise ``" A"``; the other
  variant is used when the preferred one is not a single token. The parser
  records the covered probability mass. No ``generate()``.
* ``sequence`` and ``verbalize``: ``generate()`` at temperature 1 with a
  Gumbel-max sampler whose noise comes from a generator seeded per prompt
  (:func:`~distalign_data.model_runners.base.sample_seed`), so a prompt's sample
  does not depend on which prompts share its batch.
* Batches: prompts are left-padded to a canonical width that depends on the
  prompt's own length only (about 1/16 rounding), and a batch holds prompts of
  one width, length-sorted, longest first. Each prompt therefore sees exactly the
  same tensor shapes in any batch, process count or resumed run, and on CPU its
  result is bit-for-bit the same (tested). The batch size is a number or
  ``auto`` (8 on CPU; on a GPU it starts large and halves on out-of-memory).
* Data parallel: under ``accelerate launch`` (or ``torchrun``) each process takes
  every n-th prompt, results are gathered with ``gather_object`` after every
  round of batches, and only the main process calls ``on_output`` (which writes).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from distalign_data.model_runners.base import Capabilities
from distalign_data.model_runners.base import Job
from distalign_data.model_runners.base import RawOutput
from distalign_data.model_runners.base import sample_seed

PREFIX = "hf:"
# The paper's local model generated at most 120 new tokens.
DEFAULT_MAX_NEW_TOKENS = 120
CPU_AUTO_BATCH_SIZE = 8
GPU_AUTO_BATCH_SIZE = {"logprobs": 128, "generate": 64}


def canonical_width(length: int) -> int:
    """The padded width of a prompt of ``length`` tokens: rounded up by at most about 1/16.

    >>> [canonical_width(n) for n in (1, 8, 9, 100, 129, 1000)]
    [8, 8, 16, 104, 136, 1024]
    """
    step = max(8, 1 << max(0, length.bit_length() - 5))
    return -(-length // step) * step


def letter_token_ids(tokenizer: Any, prompt_text: str, letters: Any) -> list[int]:
    """The token id that answers with each letter right after ``prompt_text``.

    After whitespace the answer is the bare letter ("A"); otherwise a letter
    with a leading space (" A"). Falls back to the other variant when the
    preferred one is not a single token; ValueError when neither is.
    """
    ends_with_space = prompt_text[-1:].isspace()
    ids = []
    for letter in letters:
        variants = (letter, " " + letter) if ends_with_space else (" " + letter, letter)
        for variant in variants:
            encoded = tokenizer.encode(variant, add_special_tokens=False)
            if len(encoded) == 1:
                ids.append(encoded[0])
                break
        else:
            raise ValueError(f"the tokenizer has no single token for the option letter {letter!r} (nor {' ' + letter!r})")
    return ids


def _resolve_dtype(dtype: str | None) -> Any:
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. bfloat16, float16, float32)")
    return resolved


class GumbelSampler:
    """A logits processor that adds Gumbel noise from one seeded generator per row.

    With greedy decoding on top, each row draws an exact sample from
    softmax(logits), using only its own random stream.
    """

    def __init__(self, seeds: list[int], device: Any) -> None:
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        uniform = torch.empty_like(scores, dtype=torch.float32)
        for row, generator in enumerate(self.generators):
            uniform[row].uniform_(generator=generator)
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
        return scores.float() + gumbel


class HFBackend:
    """A causal LM from a local folder or a Hub id; see the module docstring."""

    name = "hf"
    capabilities = Capabilities(logprobs=True, max_top_logprobs=None)

    def __init__(
        self,
        spec: str,
        *,
        batch_size: int | str | None = None,
        dtype: str | None = None,
        device_map: str | None = None,
        device: str | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers import AutoTokenizer

        if not spec.startswith(PREFIX) or len(spec) == len(PREFIX):
            raise ValueError(f"model spec {spec!r} is not hf:<path-or-hub-id>")
        self.spec = spec
        self.path = spec[len(PREFIX) :]
        self.batch_size = None if batch_size in (None, "auto") else int(batch_size)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be 'auto' or a positive number, got {batch_size!r}")
        self.max_new_tokens = int(max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
        self._state = None
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1:
            from accelerate import PartialState

            # Without cpu=True, accelerate leaves CPU processes unconnected (each would write).
            self._state = PartialState(cpu=device == "cpu" or (device is None and not torch.cuda.is_available()))
            if self._state.num_processes != world_size:
                raise RuntimeError(f"WORLD_SIZE is {world_size} but accelerate joined {self._state.num_processes} processes")
        self.is_main_process = self._state is None or self._state.is_main_process
        self.num_processes = 1 if self._state is None else self._state.num_processes
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        load = {"dtype": _resolve_dtype(dtype)}
        if device_map is not None:
            load["device_map"] = device_map
        self.model = AutoModelForCausalLM.from_pretrained(self.path, **load)
        if device_map is None:
            if device is None:
                device = self._state.device if self._state is not None else ("cuda" if torch.cuda.is_available() else "cpu")
            self.model.to(device)
        self.model.eval()
        self.device = self.model.device
        self.dtype_name = str(self.model.dtype).removeprefix("torch.")
        self._letter_ids: dict[tuple[str, tuple[str, ...]], list[int]] = {}

    # -- facts -------------------------------------------------------------

    def sampling_parameters(self, method: str) -> dict:
        if method == "logprobs":
            return {"method": "next_token_logprobs", "answer_tokens": "option letters", "dtype": self.dtype_name}
        return {
            "temperature": 1.0,
            "top_p": 1.0,
            "max_new_tokens": self.max_new_tokens,
            "sampler": "gumbel_max_per_prompt_seed",
            "dtype": self.dtype_name,
        }

    def describe(self) -> dict:
        config = self.model.config
        return {
            "model_path": self.path,
            "model_revision": getattr(config, "_commit_hash", None),
            "model_type": getattr(config, "model_type", None),
            "dtype": self.dtype_name,
            "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
            "num_processes": self.num_processes,
        }

    def close(self) -> None:
        self.model = None

    # -- prompts -----------------------------------------------------------

    def prompt_string(self, prompt: Any) -> str:
        """What the model reads: the chat template's rendering when the tokenizer has one, else the plain text."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(list(prompt.messages), add_generation_prompt=True, tokenize=False)
        return prompt.text

    def _encode(self, text: str) -> list[int]:
        # A chat template writes its own special tokens; plain text gets the tokenizer's (BOS).
        with_special = not getattr(self.tokenizer, "chat_template", None)
        return self.tokenizer(text, add_special_tokens=with_special)["input_ids"]

    def _answer_ids(self, text: str, letters: tuple[str, ...]) -> list[int]:
        # The choice depends only on the prompt's last character; the tail is a cheap cache key.
        key = (text[-1:], letters)
        if key not in self._letter_ids:
            self._letter_ids[key] = letter_token_ids(self.tokenizer, text, letters)
        return self._letter_ids[key]

    # -- work --------------------------------------------------------------

    def generate(self, work: list[tuple[Job, Any]], on_output: Callable[[Job, Any, RawOutput], None]) -> None:
        items = []
        for index, (job, prompt) in enumerate(work):
            text = self.prompt_string(prompt)
            ids = self._encode(text)
            kind = "logprobs" if job.method == "logprobs" else "generate"
            items.append({"index": index, "kind": kind, "ids": ids, "width": canonical_width(len(ids)), "text": text})
        # Longest first (an out-of-memory shows up at once); the index breaks ties reproducibly.
        items.sort(key=lambda it: (it["kind"], -it["width"], -len(it["ids"]), it["index"]))
        shard = items[self._rank() :: self.num_processes]
        batches = self._batches(shard)
        rounds = self._max_over_processes(len(batches))
        for step in range(rounds):
            results = self._run_batch(batches[step], work) if step < len(batches) else []
            if self._state is not None:
                from accelerate.utils import gather_object

                results = gather_object([results])
                results = [r for per_process in results for r in per_process]
            if self.is_main_process:
                for index, raw in results:
                    job, prompt = work[index]
                    on_output(job, prompt, raw)

    def _rank(self) -> int:
        return 0 if self._state is None else self._state.process_index

    def _max_over_processes(self, value: int) -> int:
        if self._state is None:
            return value
        from accelerate.utils import gather_object

        return max(gather_object([value]))

    def _batch_size(self, kind: str) -> int:
        if self.batch_size is not None:
            return self.batch_size
        if self.device.type == "cuda":
            return GPU_AUTO_BATCH_SIZE[kind]
        return CPU_AUTO_BATCH_SIZE

    def _batches(self, items: list[dict]) -> list[list[dict]]:
        """Consecutive items of one kind and one width, at most the batch size each."""
        batches: list[list[dict]] = []
        for item in items:
            last = batches[-1] if batches else None
            if (
                last is not None
                and last[0]["kind"] == item["kind"]
                and last[0]["width"] == item["width"]
                and len(last) < self._batch_size(item["kind"])
            ):
                last.append(item)
            else:
                batches.append([item])
        return batches

    def _run_batch(self, batch: list[dict], work: list[tuple[Job, Any]]) -> list[tuple[int, RawOutput]]:
        """Run one batch, halving it on out-of-memory (results do not depend on the split)."""
        import torch

        try:
            started = time.perf_counter()
            if batch[0]["kind"] == "logprobs":
                outputs = self._logprobs(batch, work)
            else:
                outputs = self._sample(batch, work)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            self.batch_size = max(1, half)
            return self._run_batch(batch[:half], work) + self._run_batch(batch[half:], work)
        elapsed = (time.perf_counter() - started) / len(batch)
        for _, raw in outputs:
            raw.elapsed_s = elapsed
        return outputs

    def _tensors(self, batch: list[dict]) -> tuple[Any, Any]:
        import torch

        width = batch[0]["width"]
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(it["ids"])) + it["ids"] for it in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(it["ids"])) + [1] * len(it["ids"]) for it in batch], device=self.device)
        return input_ids, mask

    def _logprobs(self, batch: list[dict], work: list[tuple[Job, Any]]) -> list[tuple[int, RawOutput]]:
        import torch

        # Matrix kernels pick their blocking by shape, so a row's last bits depend on
        # the batch's row count: a short batch is filled with copies of its first row.
        filler = [batch[0]] * (self._batch_size("logprobs") - len(batch))
        input_ids, mask = self._tensors(batch + filler)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
            logprobs = torch.log_softmax(logits[: len(batch), -1, :].float(), dim=-1)
            answer_ids = [self._answer_ids(it["text"], work[it["index"]][1].letters) for it in batch]
            widest = max(len(ids) for ids in answer_ids)
            index = torch.tensor([ids + [ids[0]] * (widest - len(ids)) for ids in answer_ids], device=logprobs.device)
            picked = logprobs.gather(1, index).tolist()
        outputs = []
        for it, ids, values in zip(batch, answer_ids, picked):
            tokens = [self.tokenizer.decode([token]) for token in ids]
            top = list(zip(tokens, values[: len(ids)]))
            outputs.append((it["index"], RawOutput(top_logprobs=top, usage={"prompt_tokens": len(it["ids"])})))
        return outputs

    def _sample(self, batch: list[dict], work: list[tuple[Job, Any]]) -> list[tuple[int, RawOutput]]:
        import torch
        from transformers import GenerationConfig
        from transformers import LogitsProcessorList

        input_ids, mask = self._tensors(batch)
        seeds = [sample_seed(work[it["index"]][0].seed, work[it["index"]][1]) for it in batch]
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
        )
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([GumbelSampler(seeds, self.device)]),
            )
        new_tokens = generated[:, input_ids.shape[1] :].tolist()
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        outputs = []
        for it, tokens in zip(batch, new_tokens):
            count = next((i for i, token in enumerate(tokens) if token in eos), len(tokens))
            text = self.tokenizer.decode(tokens[:count], skip_special_tokens=True)
            usage = {"prompt_tokens": len(it["ids"]), "completion_tokens": count}
            outputs.append((it["index"], RawOutput(text=text, usage=usage)))
        return outputs


def create_backend(spec: str, **options: Any) -> HFBackend:
    """The backend for ``hf:<path-or-hub-id>`` (options: batch_size, dtype, device_map, device, max_new_tokens)."""
    return HFBackend(spec, **options)
