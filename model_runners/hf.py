"""Local models through ``transformers`` (and ``accelerate launch`` for data parallel).

* ``logprobs``: one forward pass per prompt that asks for the last position's
  logits only (``logits_to_keep=1``), log-softmax over the whole vocabulary, then
  the option-letter tokens are read off. Which letter token is the answer depends
  on how the prompt ends: after whitespace (a chat template's generation prompt
  ends with a newline) the bare letter ``"A"``, otherwise ``" A"``, as the
  tokenizer splits it in context (:func:`letter_token_ids`); the other variant
  is used when the preferred one is not a single token. The parser records the
  covered probability mass. No ``generate()``.
* ``sequence`` and ``verbalize``: ``generate()`` at temperature 1 with a
  sampler whose uniforms come from a generator seeded per prompt
  (:func:`~distalign_data.model_runners.base.sample_seed`), so a prompt's sample
  does not depend on which prompts share its batch.
* Batches: left-padded, length-sorted (longest first), at most the batch size
  each; the batch size is a number or ``auto`` (8 on CPU; on a GPU it starts
  large and batches are split in halves on out-of-memory). Matrix kernels pick
  their blocking by tensor shape, so a prompt's last bits depend on its batch
  mates. The batches are therefore fixed once over every prompt of the run,
  finished or not (``plan``), and a batch that holds any prompt still to do runs
  whole: a resumed run, or one split over processes, computes every prompt in the
  same batch as an uninterrupted single-process run, and its records are bit for
  bit the same (tested on CPU). Only an out-of-memory split changes batches.
* Cache identity (``response_identity``, part of every response cache key and
  of the manifest): the model's fingerprint (a model folder's file hash, or a
  Hub id's cached commit; :mod:`~distalign_data.model_runners.model_fingerprint`)
  and :data:`RENDERING_VERSION`; the dtype is in the sampling parameters. Library
  versions and the device are recorded in the manifest but not keyed: they move
  only the last bits of a result, as batch composition does.
* Data parallel: under ``accelerate launch`` (or ``torchrun``) process i takes
  batches i, i + n, ...; results are gathered with ``gather_object`` after every
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
from distalign_data.model_runners.model_fingerprint import model_fingerprint

PREFIX = "hf:"
# The paper's local model generated at most 120 new tokens.
DEFAULT_MAX_NEW_TOKENS = 120
CPU_AUTO_BATCH_SIZE = 8
GPU_AUTO_BATCH_SIZE = {"logprobs": 128, "generate": 64}
# Part of every response cache key: raise it whenever what the model reads
# (prompt_string, _encode) or which tokens are read off (letter_token_ids) changes.
RENDERING_VERSION = 1


def letter_token_ids(tokenizer: Any, prompt_text: str, letters: Any) -> list[int]:
    """The token id that answers with each letter right after ``prompt_text``.

    After whitespace the answer is the bare letter ("A"); otherwise a letter
    with a leading space (" A"). The token is read off the tokenizer's own split
    of the prompt's last character followed by the answer, because SentencePiece
    tokenizers (Llama-2, Mistral) put a word-start marker on a letter encoded on
    its own: ``encode("A")`` gives "▁A", yet after a newline the text "A" is the
    bare "A" token. When that split does not end in one token of its own (the
    letter merges with the character before it), the answer encoded alone is
    used; the other variant is the fallback. ValueError when none is one token.
    """
    tail = prompt_text[-1:]
    before = tokenizer.encode(tail, add_special_tokens=False) if tail else []

    def in_context(answer: str) -> int | None:
        encoded = tokenizer.encode(tail + answer, add_special_tokens=False)
        return encoded[-1] if len(encoded) == len(before) + 1 and encoded[:-1] == before else None

    def alone(answer: str) -> int | None:
        encoded = tokenizer.encode(answer, add_special_tokens=False)
        return encoded[0] if len(encoded) == 1 else None

    ids = []
    for letter in letters:
        variants = (letter, " " + letter) if tail.isspace() else (" " + letter, letter)
        found = next((i for v in variants for i in (in_context(v), alone(v)) if i is not None), None)
        if found is None:
            raise ValueError(f"the tokenizer has no single token for the option letter {letter!r} (nor {' ' + letter!r})")
        ids.append(found)
    return ids


def _resolve_dtype(dtype: str | None) -> Any:
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. bfloat16, float16, float32)")
    return resolved


class SeededSampler:
    """A logits processor that draws each row's next token with that row's own seeded generator.

    Inverse-CDF sampling from softmax(logits) (temperature 1, no top-k/top-p);
    it sets the drawn token's score to +inf, so greedy decoding on top emits the
    draw. The uniforms come from CPU generators, so a seed gives the same
    uniforms on any device.
    """

    def __init__(self, seeds: list[int]) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        cdf = torch.softmax(scores.float(), dim=-1).cumsum(dim=-1)
        uniforms = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(cdf.device)
        drawn = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None]).clamp_(max=scores.shape[-1] - 1)
        return scores.scatter_(1, drawn, float("inf"))


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
        # transformers does not expand "~" (it would take the path for a Hub id).
        location = os.path.expanduser(self.path)
        if self.path.startswith((".", "/", "~")) and not os.path.isdir(location):
            raise ValueError(f"model spec {spec!r}: no model folder at {self.path!r}")
        if batch_size in (None, "auto"):
            self.batch_size = None
        elif str(batch_size).isdigit() and int(batch_size) >= 1:
            self.batch_size = int(batch_size)
        else:
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
        self.tokenizer = AutoTokenizer.from_pretrained(location, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        load = {"dtype": _resolve_dtype(dtype)}
        if device_map is not None:
            load["device_map"] = device_map
        self.model = AutoModelForCausalLM.from_pretrained(location, **load)
        if device_map is None:
            if device is None:
                device = self._state.device if self._state is not None else ("cuda" if torch.cuda.is_available() else "cpu")
            self.model.to(device)
        self.model.eval()
        self.device = self.model.device
        self.dtype_name = str(self.model.dtype).removeprefix("torch.")
        # After loading: a Hub model's revision is read off the local cache it was loaded into.
        self.response_identity = {**model_fingerprint(location), "rendering_version": RENDERING_VERSION}
        self._letter_ids: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self._plan: list[list[dict]] | None = None
        self._max_rows: int | None = None

    # -- facts -------------------------------------------------------------

    def sampling_parameters(self, method: str) -> dict:
        if method == "logprobs":
            return {"method": "next_token_logprobs", "answer_tokens": "option letters", "dtype": self.dtype_name}
        return {
            "temperature": 1.0,
            "top_p": 1.0,
            "max_new_tokens": self.max_new_tokens,
            "sampler": "inverse_cdf_per_prompt_seed",
            "dtype": self.dtype_name,
        }

    def describe(self) -> dict:
        import torch
        import transformers

        config = self.model.config
        return {
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "model_path": self.path,
            "model_type": getattr(config, "model_type", None),
            "dtype": self.dtype_name,
            "device": str(self.device),
            "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
            "num_processes": self.num_processes,
        }

    def close(self) -> None:
        self.model = None

    # -- prompts -----------------------------------------------------------

    def prompt_string(self, prompt: Any) -> str:
        """What the model reads: the chat template's rendering when the tokenizer has one, else the plain text."""
        if not getattr(self.tokenizer, "chat_template", None):
            return prompt.text
        from jinja2 import TemplateError

        messages = list(prompt.messages)
        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except TemplateError:
            # Some templates (Gemma's, older Mistral's) refuse a system turn: it opens the user turn instead.
            system, user = messages
            merged = [{"role": "user", "content": f"{system['content']}\n\n{user['content']}"}]
            return self.tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)

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

    def plan(self, work: list[tuple[Job, Any]]) -> None:
        """Fix the batches over every prompt of the run, done or not (see the module docstring)."""
        self._plan = self._batches(work)

    def generate(self, work: list[tuple[Job, Any]], on_output: Callable[[Job, Any, RawOutput], None]) -> None:
        # A plan serves the one generate() call that follows it.
        batches, self._plan = (self._plan if self._plan is not None else self._batches(work)), None
        wanted = {prompt.sha256 for _, prompt in work}
        planned = {it["prompt"].sha256 for batch in batches for it in batch}
        if not wanted <= planned:
            raise ValueError("generate() got prompts that plan() did not include")
        # A batch with any wanted prompt runs whole, so its composition is always the planned one.
        needed = [batch for batch in batches if any(it["prompt"].sha256 in wanted for it in batch)]
        rank, size = (0, 1) if self._state is None else (self._state.process_index, self._state.num_processes)
        mine = needed[rank::size]
        rounds = -(-len(needed) // size)
        emitted = 0
        for step in range(rounds):
            results = self._run_batch(mine[step]) if step < len(mine) else []
            results = [(it, raw) for it, raw in results if it["prompt"].sha256 in wanted]
            if self._state is not None:
                from accelerate.utils import gather_object

                results = [r for per_process in gather_object([results]) for r in per_process]
            if self.is_main_process:
                emitted += len(results)
                for it, raw in results:
                    on_output(it["job"], it["prompt"], raw)
        if self.is_main_process and emitted != len(work):
            raise RuntimeError(f"the local backend produced {emitted} outputs for {len(work)} requests")

    def _batch_size(self, kind: str) -> int:
        if self.batch_size is not None:
            return self.batch_size
        if self.device.type == "cuda":
            return GPU_AUTO_BATCH_SIZE[kind]
        return CPU_AUTO_BATCH_SIZE

    def _batches(self, work: list[tuple[Job, Any]]) -> list[list[dict]]:
        """Length-sorted batches (longest first: an out-of-memory shows up at once), one kind each."""
        items = []
        for job, prompt in work:
            text = self.prompt_string(prompt)
            kind = "logprobs" if job.method == "logprobs" else "generate"
            if kind == "logprobs":
                try:
                    self._answer_ids(text, prompt.letters)  # a tokenizer without letter tokens fails before any work
                except ValueError as error:
                    raise ValueError(f"row {job.row['id']!r}: {error}") from None
            items.append({"job": job, "prompt": prompt, "kind": kind, "text": text, "ids": self._encode(text)})
        items.sort(key=lambda it: (it["kind"], -len(it["ids"]), it["prompt"].sha256))
        batches: list[list[dict]] = []
        for item in items:
            last = batches[-1] if batches else None
            if last is not None and last[0]["kind"] == item["kind"] and len(last) < self._batch_size(item["kind"]):
                last.append(item)
            else:
                batches.append([item])
        return batches

    def _run_batch(self, batch: list[dict]) -> list[tuple[dict, RawOutput]]:
        """Run one batch, split in halves on out-of-memory (and later batches split to the size that fitted)."""
        import torch

        if self._max_rows is not None and len(batch) > self._max_rows:
            size = self._max_rows  # fixed here: a nested out-of-memory may lower _max_rows meanwhile
            return [out for i in range(0, len(batch), size) for out in self._run_batch(batch[i : i + size])]
        try:
            started = time.perf_counter()
            outputs = self._logprobs(batch) if batch[0]["kind"] == "logprobs" else self._sample(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self._max_rows = len(batch) // 2
            return self._run_batch(batch)
        elapsed = (time.perf_counter() - started) / len(batch)
        for _, raw in outputs:
            raw.elapsed_s = elapsed
        return outputs

    def _tensors(self, batch: list[dict]) -> tuple[Any, Any]:
        import torch

        width = max(len(it["ids"]) for it in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(it["ids"])) + it["ids"] for it in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(it["ids"])) + [1] * len(it["ids"]) for it in batch], device=self.device)
        return input_ids, mask

    def _logprobs(self, batch: list[dict]) -> list[tuple[dict, RawOutput]]:
        import torch

        input_ids, mask = self._tensors(batch)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, use_cache=False
            ).logits
            logprobs = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
            answer_ids = [self._answer_ids(it["text"], it["prompt"].letters) for it in batch]
            widest = max(len(ids) for ids in answer_ids)
            index = torch.tensor([ids + [ids[0]] * (widest - len(ids)) for ids in answer_ids], device=logprobs.device)
            picked = logprobs.gather(1, index).tolist()
        outputs = []
        for it, ids, values in zip(batch, answer_ids, picked):
            tokens = [self.tokenizer.decode([token]) for token in ids]
            top = list(zip(tokens, values[: len(ids)]))
            outputs.append((it, RawOutput(top_logprobs=top, usage={"prompt_tokens": len(it["ids"])})))
        return outputs

    def _sample(self, batch: list[dict]) -> list[tuple[dict, RawOutput]]:
        import torch
        from transformers import GenerationConfig
        from transformers import LogitsProcessorList

        input_ids, mask = self._tensors(batch)
        seeds = [sample_seed(it["job"].seed, it["prompt"]) for it in batch]
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            use_cache=True,  # a fresh GenerationConfig leaves it unset, which recomputes the prompt every step
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
        )
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([SeededSampler(seeds)]),
            )
        new_tokens = generated[:, input_ids.shape[1] :].tolist()
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        outputs = []
        for it, tokens in zip(batch, new_tokens):
            count = next((i for i, token in enumerate(tokens) if token in eos), len(tokens))
            text = self.tokenizer.decode(tokens[:count], skip_special_tokens=True)
            usage = {"prompt_tokens": len(it["ids"]), "completion_tokens": count}
            outputs.append((it, RawOutput(text=text, usage=usage)))
        return outputs


# The options of ``get_backend`` a local model takes.
HF_OPTIONS = frozenset({"batch_size", "dtype", "device_map", "device", "max_new_tokens"})


def create_backend(spec: str, **options: Any) -> HFBackend:
    """The backend for ``hf:<path-or-hub-id>``; ValueError naming any option a local model does not take.

    >>> create_backend("hf:some/model", concurrency=4, batch_size=None)
    Traceback (most recent call last):
    ...
    ValueError: hf:some/model: option(s) concurrency do not apply to local models; they take batch_size, device, device_map, dtype, max_new_tokens
    """
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(given) - HF_OPTIONS)
    if unknown:
        raise ValueError(f"{spec}: option(s) {', '.join(unknown)} do not apply to local models; they take {', '.join(sorted(HF_OPTIONS))}")
    return HFBackend(spec, **given)
