"""The transformers backend on a tiny Llama built by the tests (CPU, no downloads)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distalign_data.model_runners.base import get_backend
from distalign_data.model_runners.base import run
from distalign_data.model_runners.hf import SeededSampler
from distalign_data.model_runners.hf import letter_token_ids
from distalign_data.prompts import render_prompt
from distalign_data.records import RecordStore
from tests.tiny_model_helpers import build_unigram_model
from tests.tiny_model_helpers import toy_rows

METHODS = ["logprobs", "sequence", "verbalize"]
STEERINGS = ["none", "persona", "few_shot"]
MAX_NEW_TOKENS = 12

# Runs the driver in a separate process (killed mid-way, or under accelerate launch).
RUN_SCRIPT = """
import json, sys
from distalign_data.model_runners.base import get_backend, run
model, rows_file, out, batch_size = sys.argv[1:5]
backend = get_backend("hf:" + model, batch_size=batch_size, max_new_tokens=int(sys.argv[5]))
rows = json.loads(open(rows_file).read())
run(backend, rows, methods=sys.argv[6].split(","), steerings=sys.argv[7].split(","), run_dir=out, seed=7, progress=False)
"""


def comparable(run_dir: Path) -> list[dict]:
    return sorted((r.comparable() for r in RecordStore(run_dir).records()), key=lambda r: r["key"])


def run_tiny(model_dir: Path, run_dir: Path, rows: list[dict], *, batch_size="auto", seed: int = 7, methods=METHODS, steerings=STEERINGS):
    backend = get_backend(f"hf:{model_dir}", batch_size=batch_size, max_new_tokens=MAX_NEW_TOKENS)
    return run(backend, rows, methods=methods, steerings=steerings, run_dir=run_dir, seed=seed, progress=False)


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("script") / "run_rows.py"
    path.write_text(RUN_SCRIPT)
    return path


def subprocess_env() -> dict:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "TOKENIZERS_PARALLELISM": "false"}


# -- letter tokens -----------------------------------------------------------


def test_letter_token_follows_how_the_prompt_ends(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    no_space = "Question: Do you agree?\nAnswer:"
    with_space = no_space + " "
    ids_no_space = letter_token_ids(tokenizer, no_space, "AB")
    ids_with_space = letter_token_ids(tokenizer, with_space, "AB")
    assert [tokenizer.decode([i]) for i in ids_no_space] == [" A", " B"]
    assert [tokenizer.decode([i]) for i in ids_with_space] == ["A", "B"]
    # Independently: the tokenizer's own split of "...Answer: A" ends with the chosen token.
    assert tokenizer.encode(no_space + " A", add_special_tokens=False)[-1] == ids_no_space[0]
    # The chat template's generation prompt ends with a newline: the bare letter follows.
    row = toy_rows(1)[0]
    backend = get_backend(f"hf:{tiny_model_dir}")
    chat = backend.prompt_string(render_prompt(row, "logprobs", "none", seed=0))
    assert chat.endswith("<|assistant|>\n")
    assert backend._answer_ids(chat, ("A", "B")) == ids_with_space
    assert tokenizer.encode(chat + "B", add_special_tokens=False)[-1] == ids_with_space[1]


def sentencepiece_style_tokenizer():
    """A Llama-2/Mistral-style tokenizer: a word-start marker "▁" is put before the text, so encode("A") is "▁A"."""
    import string

    import tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", *string.ascii_letters, *string.digits, *string.punctuation, "\n", "▁", "▁A", "▁B"]
    model = tokenizers.models.BPE(
        vocab={piece: i for i, piece in enumerate(pieces)}, merges=[("▁", "A"), ("▁", "B")], unk_token="<unk>"
    )
    spm = tokenizers.Tokenizer(model)
    spm.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    spm.decoder = tokenizers.decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return PreTrainedTokenizerFast(tokenizer_object=spm, unk_token="<unk>")


def test_letter_token_for_a_sentencepiece_style_tokenizer():
    tokenizer = sentencepiece_style_tokenizer()
    pieces = lambda ids: tokenizer.convert_ids_to_tokens(ids)  # noqa: E731
    assert pieces(tokenizer.encode("A", add_special_tokens=False)) == ["▁A"]  # the trap: the letter alone gets the marker
    for prompt, expected in (("<|assistant|>\n", ["A", "B"]), ("[/INST]", ["▁A", "▁B"]), ("Answer:", ["▁A", "▁B"])):
        ids = letter_token_ids(tokenizer, prompt, "AB")
        assert pieces(ids) == expected, prompt
        # Independently: the tokenizer's own split of the prompt followed by the answer ends with the chosen tokens.
        answer = "" if prompt.endswith("\n") else " "
        assert [tokenizer.encode(prompt + answer + letter, add_special_tokens=False)[-1] for letter in "AB"] == ids


def test_chat_template_without_a_system_turn_gets_it_in_the_user_turn(tmp_path):
    from transformers import AutoTokenizer

    from tests.tiny_model_helpers import build_tiny_model

    folder = build_tiny_model(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}<|assistant|>\n"
    )
    tokenizer.save_pretrained(folder)
    backend = get_backend(f"hf:{folder}")
    prompt = render_prompt(toy_rows(1)[0], "logprobs", "none", seed=0)
    text = backend.prompt_string(prompt)
    assert text == f"<|user|>\n{prompt.messages[0]['content']}\n\n{prompt.messages[1]['content']}<|end|>\n<|assistant|>"  # jinja drops the template's final newline


# -- log-probs ---------------------------------------------------------------


def reference_logprobs(tokenizer, model, prompt_text: str, token_ids: list[int]) -> list[float]:
    """One unpadded prompt, full forward pass over every position (the slow, obvious way)."""
    import torch

    ids = torch.tensor([tokenizer(prompt_text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    logprobs = logits - torch.logsumexp(logits, dim=0)
    return [float(logprobs[i]) for i in token_ids]


def logprob_values(records: list[dict]) -> list[float]:
    return [lp for record in records for _, lp in json.loads(record["raw_response"])]


def test_batched_logprobs_equal_single_prompt_logprobs(tiny_model_dir, tmp_path):
    rows = toy_rows(3)  # prompts of several lengths, so batches are left-padded
    run_tiny(tiny_model_dir, tmp_path / "batched", rows, batch_size=8, methods=["logprobs"])
    run_tiny(tiny_model_dir, tmp_path / "single", rows, batch_size=1, methods=["logprobs"])
    batched = comparable(tmp_path / "batched")
    assert len(batched) == len(rows) * 3
    assert logprob_values(batched) == pytest.approx(logprob_values(comparable(tmp_path / "single")), abs=1e-5)

    backend = get_backend(f"hf:{tiny_model_dir}")
    for record in batched[:6]:
        row = next(r for r in rows if r["id"] == record["row_id"])
        prompt = render_prompt(row, "logprobs", record["steering"], seed=7)
        text = backend.prompt_string(prompt)
        token_ids = backend._answer_ids(text, prompt.letters)
        expected = reference_logprobs(backend.tokenizer, backend.model, text, token_ids)
        got = [lp for _, lp in json.loads(record["raw_response"])]
        assert got == pytest.approx(expected, abs=2e-5)
        covered = sum(math.exp(lp) for lp in expected)
        assert record["parse_details"]["covered_mass"] == pytest.approx(covered, rel=1e-4)
        assert record["distribution"] == pytest.approx([math.exp(lp) / covered for lp in expected], rel=1e-4)
        assert record["parse_status"] == "ok"


def test_out_of_memory_splits_the_batch_and_keeps_the_smaller_size(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    from distalign_data.model_runners.hf import HFBackend

    sizes = []
    real = HFBackend._logprobs

    def small_memory(self, batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(self, batch)

    rows = toy_rows(3)
    run_tiny(tiny_model_dir, tmp_path / "roomy", rows, batch_size=2, methods=["logprobs"])
    monkeypatch.setattr(HFBackend, "_logprobs", small_memory)
    run_tiny(tiny_model_dir, tmp_path / "tight", rows, batch_size=8, methods=["logprobs"], steerings=["persona"])
    # 6 persona prompts: 6 fails, the first half of 3 fails, and from then on batches hold 3 // 2 = 1 row.
    assert sizes == [6, 3, 1, 1, 1, 1, 1, 1]
    tight = comparable(tmp_path / "tight")
    roomy = [r for r in comparable(tmp_path / "roomy") if r["steering"] == "persona"]
    assert len(tight) == 6
    assert logprob_values(tight) == pytest.approx(logprob_values(roomy), abs=1e-5)


def test_plain_text_prompt_reads_the_space_letter(tiny_plain_model_dir, tmp_path):
    rows = toy_rows(1)
    run_tiny(tiny_plain_model_dir, tmp_path, rows, methods=["logprobs"], steerings=["persona"])
    record = RecordStore(tmp_path).records()[0]
    assert [token for token, _ in json.loads(record.raw_response)] == [" A", " B"]
    assert record.prompt_sha256 == render_prompt(rows[0], "logprobs", "persona", seed=7).sha256


# -- sampling ----------------------------------------------------------------


def test_seeded_sampler_draws_from_the_softmax_one_stream_per_row():
    import torch

    probabilities = torch.tensor([0.6, 0.3, 0.1, 0.0])
    scores = probabilities.log().repeat(4000, 1) + 5.0  # logits, not normalised
    draws = SeededSampler(list(range(4000)))(None, scores).argmax(dim=-1)
    # A row's draw depends on its own seed only, not on the other rows.
    assert SeededSampler([17])(None, scores[:1]).argmax(dim=-1).item() == draws[17].item()
    assert (draws < 3).all()
    frequencies = torch.bincount(draws, minlength=3).double()[:3] / 4000
    # Binomial standard error is at most 0.008; 0.03 is almost 4 of them.
    assert frequencies.tolist() == pytest.approx(probabilities[:3].tolist(), abs=0.03)


def test_seeds_reproduce_and_differ(tiny_model_dir, tmp_path):
    rows = toy_rows(2)
    kwargs = {"methods": ["sequence"], "steerings": ["none", "few_shot"]}
    run_tiny(tiny_model_dir, tmp_path / "a", rows, seed=3, batch_size=4, **kwargs)
    run_tiny(tiny_model_dir, tmp_path / "b", rows, seed=3, batch_size=1, **kwargs)
    run_tiny(tiny_model_dir, tmp_path / "c", rows, seed=4, batch_size=4, **kwargs)
    first, again, other = (comparable(tmp_path / name) for name in "abc")
    assert first == again
    texts = [r["raw_response"] for r in first]
    assert all(len(t) > 0 for t in texts)
    assert texts != [r["raw_response"] for r in other]
    # No-steering prompts do not name the group: both groups of a question share one response.
    none = [r for r in first if r["steering"] == "none"]
    assert len({r["raw_response"] for r in none}) == 2 and len(none) == 4


LETTER_ODDS = {"A": 0.6, "B": 0.4}
VERBALIZED = '{"A": 60, "B": 40}'


@pytest.fixture(scope="module")
def letters_model(tmp_path_factory) -> Path:
    """Answers A or B (with or without a leading space) with odds 0.6 : 0.4, whatever the prompt."""
    logits = {}
    for letter, p in LETTER_ODDS.items():
        logits[letter] = logits[" " + letter] = 20 + math.log(p)
    return build_unigram_model(tmp_path_factory.mktemp("letters"), logits)


def test_sequence_and_logprobs_end_to_end_on_a_model_with_known_odds(letters_model, tmp_path):
    row = toy_rows(1)[0] | {"options": ["Yes", "No", "Not sure"]}
    backend = get_backend(f"hf:{letters_model}", max_new_tokens=30)
    run(backend, [row], methods=["sequence", "logprobs"], steerings=["persona"], run_dir=tmp_path, seed=0, progress=False)
    records = {r.method: r for r in RecordStore(tmp_path).records()}
    sequence = records["sequence"]
    assert sequence.parse_status == "ok", sequence.parse_reason
    letters = [c for c in sequence.raw_response if not c.isspace()]
    assert len(letters) == 30 and set(letters) <= {"A", "B"}
    # Counted independently of the parser; 30 draws at 0.6 have a standard error of 0.09.
    assert sequence.distribution == pytest.approx([letters.count("A") / 30, letters.count("B") / 30, 0.0])
    assert sequence.distribution[0] == pytest.approx(0.6, abs=0.3)
    # Log-probs: only the bare-letter variant follows the chat template's newline (0.3 + 0.2 of the mass).
    logprobs = records["logprobs"]
    assert logprobs.distribution == pytest.approx([0.6, 0.4, 0.0], abs=1e-4)
    assert logprobs.parse_details["covered_mass"] == pytest.approx(0.5, abs=1e-4)


def test_verbalize_end_to_end(tmp_path):
    folder = build_unigram_model(tmp_path / "model", {VERBALIZED: 20.0})
    row = toy_rows(1)[0] | {"options": ["Yes", "No", "Not sure"]}
    backend = get_backend(f"hf:{folder}", max_new_tokens=1)
    run(backend, [row], methods=["verbalize"], steerings=["few_shot"], run_dir=tmp_path / "run", seed=0, progress=False)
    (record,) = RecordStore(tmp_path / "run").records()
    assert record.raw_response == VERBALIZED
    assert (record.parse_status, record.distribution) == ("ok", pytest.approx([0.6, 0.4, 0.0]))
    assert record.usage == {"prompt_tokens": len(backend.tokenizer(backend.prompt_string(render_prompt(row, "verbalize", "few_shot", seed=0)), add_special_tokens=False)["input_ids"]), "completion_tokens": 1}


# -- resumption and data parallel -------------------------------------------


def test_run_killed_mid_way_resumes_to_the_same_records(tiny_model_dir, tmp_path, script):
    rows = toy_rows(2)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    run_tiny(tiny_model_dir, tmp_path / "whole", rows, batch_size=2)
    whole = comparable(tmp_path / "whole")
    assert len(whole) == len(rows) * 9

    killed = tmp_path / "killed"
    args = [sys.executable, str(script), str(tiny_model_dir), str(rows_file), str(killed), "2", str(MAX_NEW_TOKENS), ",".join(METHODS), ",".join(STEERINGS)]
    process = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records_file = killed / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if records_file.exists() and records_file.read_bytes().count(b"\n") >= 8:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(RecordStore(killed).records())
    assert 8 <= written < len(whole), "the run was not killed mid-way"

    summary = run_tiny(tiny_model_dir, killed, rows, batch_size=2)
    assert summary.skipped == written
    assert comparable(killed) == whole


def test_resume_after_a_partly_written_batch_recomputes_it_in_the_same_batch(tiny_model_dir, tmp_path):
    rows = toy_rows(3)
    run_tiny(tiny_model_dir, tmp_path / "whole", rows, batch_size=4, methods=["logprobs"])
    whole = comparable(tmp_path / "whole")
    lines = (tmp_path / "whole" / "records.jsonl").read_text().splitlines(keepends=True)
    # 5 records end in the middle of a batch of 4 prompts; without the cache every other prompt is recomputed.
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "records.jsonl").write_text("".join(lines[:5]) + lines[5][:40])
    summary = run_tiny(tiny_model_dir, tmp_path / "part", rows, batch_size=4, methods=["logprobs"])
    assert summary.skipped == 5 and summary.from_cache == 0
    assert comparable(tmp_path / "part") == whole


def test_two_process_accelerate_launch_gives_the_same_records(tiny_model_dir, tmp_path, script):
    rows = toy_rows(2)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    run_tiny(tiny_model_dir, tmp_path / "one", rows, batch_size=2)
    launch = [
        # The launcher of this interpreter's accelerate (never skipped for want of an "accelerate" on PATH).
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        str(script), str(tiny_model_dir), str(rows_file), str(tmp_path / "two"), "2", str(MAX_NEW_TOKENS),
        ",".join(METHODS), ",".join(STEERINGS),
    ]  # fmt: skip
    result = subprocess.run(launch, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    info = RecordStore(tmp_path / "two").manifest()["backend_info"]
    assert info["num_processes"] == 2
    import torch
    import transformers

    assert (info["torch_version"], info["transformers_version"]) == (torch.__version__, transformers.__version__)
    assert comparable(tmp_path / "two") == comparable(tmp_path / "one")


def test_a_tokenizer_without_letter_tokens_is_refused_before_any_work(tiny_model_dir, tmp_path, monkeypatch):
    from distalign_data.model_runners import hf

    def no_letters(tokenizer, prompt_text, letters):
        raise ValueError("the tokenizer has no single token for the option letter 'A' (nor ' A')")

    monkeypatch.setattr(hf, "letter_token_ids", no_letters)
    with pytest.raises(ValueError, match=r"row 'q0/Democrat': the tokenizer has no single token for the option letter 'A'"):
        run_tiny(tiny_model_dir, tmp_path, toy_rows(1), methods=["sequence", "logprobs"], steerings=["persona"])
    assert RecordStore(tmp_path).records() == []


# -- response cache keys: the model's fingerprint -----------------------------


def independent_folder_sha256(folder: Path) -> str:
    """The folder fingerprint recomputed from the files' bytes, without the digest cache."""
    import hashlib

    outer = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith((".", "README")):
            outer.update(f"{path.name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return outer.hexdigest()


def test_a_shared_cache_serves_an_unchanged_model_but_not_a_changed_template_or_weights(tiny_model_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file
    from safetensors.torch import save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    rows, cache = toy_rows(1), tmp_path / "shared-cache"

    def run_in(name: str):
        backend = get_backend(f"hf:{model}", batch_size=2, max_new_tokens=MAX_NEW_TOKENS)
        summary = run(backend, rows, methods=["logprobs", "sequence"], steerings=["persona"], run_dir=tmp_path / name,
                      seed=7, cache_dir=cache, progress=False)
        return summary, RecordStore(tmp_path / name).manifest()["response_identity"]

    first, identity = run_in("first")
    assert first.generated == first.unique_prompts == 4 and first.from_cache == 0
    assert identity == {"model_sha256": independent_folder_sha256(model), "rendering_version": 1}
    again, same = run_in("again")  # a new backend object and run directory, same files
    assert (again.from_cache, again.generated, same) == (4, 0, identity)
    assert comparable(tmp_path / "again") == comparable(tmp_path / "first")

    template = model / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|assistant|>\n{% endif %}", "Answer:<|assistant|>\n{% endif %}"))
    templated, identity_t = run_in("template")
    assert (templated.from_cache, templated.generated) == (0, 4) and identity_t != identity

    weights = load_file(model / "model.safetensors")
    name = sorted(weights)[len(weights) // 2]  # a middle tensor, as a fine-tune of some layers changes
    weights[name] = weights[name] + 0.01 * torch.ones_like(weights[name])
    before = (model / "model.safetensors").read_bytes()
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    after = (model / "model.safetensors").read_bytes()
    # Same size, header and first and last 64 KiB: a hash of size and file ends would not see the change.
    assert len(after) == len(before) and after[:65536] == before[:65536] and after[-65536:] == before[-65536:] and after != before
    reweighted, identity_w = run_in("weights")
    assert (reweighted.from_cache, reweighted.generated) == (0, 4)
    assert identity_w == {"model_sha256": independent_folder_sha256(model), "rendering_version": 1}
    assert len({identity["model_sha256"], identity_t["model_sha256"], identity_w["model_sha256"]}) == 3


def test_large_file_digests_are_reused_until_the_file_changes_even_with_its_mtime_restored(tmp_path, monkeypatch):
    import sqlite3

    from distalign_data.model_runners import model_fingerprint as fp

    monkeypatch.setenv("DISTALIGN_CACHE", str(tmp_path / "cache-home"))
    monkeypatch.setattr(fp, "DIGEST_CACHE_MIN_BYTES", 1000)
    monkeypatch.setattr(fp, "RACY_WINDOW_S", 0.0)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("not part of the model")
    weights = folder / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 16)
    time.sleep(0.05)  # past the file-time tick of the write
    digest = fp.folder_sha256(folder)
    assert digest == independent_folder_sha256(folder)
    digest_file = tmp_path / "cache-home" / fp.DIGEST_CACHE_FILE
    with sqlite3.connect(digest_file) as conn:
        assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 1  # the large file only

    # A stale digest is served while stat is unchanged (proof that the cache is read) ...
    with sqlite3.connect(digest_file) as conn:
        conn.execute("UPDATE responses SET response = ?", (json.dumps({"sha256": "0" * 64}),))
    assert fp.folder_sha256(folder) != digest
    # ... and a rewrite of the same size with the modification time put back is still seen (ctime moved).
    before = weights.stat()
    time.sleep(0.05)
    weights.write_bytes(bytes(reversed(range(256))) * 16)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fp.folder_sha256(folder) == independent_folder_sha256(folder) != digest

    # The same files give the same fingerprint in another process (resumed runs keep their keys).
    code = "import sys; from distalign_data.model_runners.model_fingerprint import folder_sha256; print(folder_sha256(sys.argv[1]))"
    other = subprocess.run([sys.executable, "-c", code, str(folder)], env=subprocess_env(), capture_output=True, text=True, check=True)
    assert other.stdout.strip() == independent_folder_sha256(folder)


def test_a_hub_model_is_identified_by_the_commit_its_ref_points_to(tmp_path):
    from distalign_data.model_runners.model_fingerprint import hub_commit
    from distalign_data.model_runners.model_fingerprint import model_fingerprint

    repo = tmp_path / "models--org--tiny"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert hub_commit("org/tiny", cache_dir=tmp_path) == "a" * 40
    (repo / "refs" / "main").write_text("b" * 40)  # the ref moved: another key
    assert hub_commit("org/tiny", cache_dir=tmp_path) == "b" * 40
    assert hub_commit("org/absent", cache_dir=tmp_path) is None
    with pytest.raises(ValueError, match=r"hf:org/absent-\w+: not a model folder and not in the local Hugging Face cache"):
        model_fingerprint(f"org/absent-{os.getpid()}")


HUB_SCRIPT = """
import json, sys
from pathlib import Path
from distalign_data.model_runners.base import get_backend, run
rows, out, refs = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), Path(sys.argv[3])
results = []
for name, commit in (("a", "a" * 40), ("b", "b" * 40), ("a-again", "a" * 40)):
    refs.write_text(commit)
    backend = get_backend("hf:org/tiny", batch_size=2, max_new_tokens=4)
    summary = run(backend, rows, methods=["logprobs"], steerings=["persona"], run_dir=out / name, seed=7,
                  cache_dir=out / "cache", progress=False)
    results.append([backend.response_identity["model_revision"], summary.from_cache])
print(json.dumps(results))
"""


def test_a_hub_model_loaded_from_the_local_cache_is_keyed_by_its_revision(tiny_model_dir, tmp_path):
    import shutil

    hub = tmp_path / "hub"
    for commit in ("a" * 40, "b" * 40):
        shutil.copytree(tiny_model_dir, hub / "models--org--tiny" / "snapshots" / commit)
    (hub / "models--org--tiny" / "refs").mkdir()
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(toy_rows(1)))
    env = {**subprocess_env(), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-c", HUB_SCRIPT, str(rows_file), str(tmp_path / "runs"), str(hub / "models--org--tiny" / "refs" / "main")]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # The ref moved to b: nothing of a is reused; back at a, a's two answers are.
    assert json.loads(result.stdout.splitlines()[-1]) == [["a" * 40, 0], ["b" * 40, 0], ["a" * 40, 2]]


def test_a_model_folder_under_home_is_loaded_and_fingerprinted(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    monkeypatch.setenv("HOME", str(tmp_path))
    backend = get_backend("hf:~/models/tiny", batch_size=2, max_new_tokens=MAX_NEW_TOKENS)
    assert backend.response_identity == {"model_sha256": independent_folder_sha256(tiny_model_dir), "rendering_version": 1}
