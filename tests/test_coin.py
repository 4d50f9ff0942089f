"""The biased-coin experiment: prompts, records, the stated-vs-expressed table and figure."""

from __future__ import annotations

import json
import math
import re

import pytest

from distalign_data import coin
from distalign_data.model_runners.base import Capabilities
from distalign_data.model_runners.base import RawOutput
from distalign_data.records import RecordStore


class PerfectCoinBackend:
    """Answers every coin exactly as stated (read back from the prompt), in each method's format."""

    spec = "fake:perfect-coin"
    name = "fake"
    capabilities = Capabilities(logprobs=True, max_top_logprobs=20)

    def __init__(self):
        self.prompts = []

    def sampling_parameters(self, method):
        return {"temperature": 1.0}

    def generate(self, work, on_output):
        for job, prompt in work:
            self.prompts.append(prompt.messages[1]["content"])
            heads = int(re.search(r"heads with probability (\d+)%", prompt.messages[1]["content"]).group(1))
            if job.method == "sequence":
                n_heads = round(30 * heads / 100)
                raw = RawOutput(text=" ".join(["A"] * n_heads + ["B"] * (30 - n_heads)))
            elif job.method == "verbalize":
                raw = RawOutput(text=json.dumps({"A": heads, "B": 100 - heads}))
            else:
                # Log-probs of exactly 0 are impossible; keep a tiny mass on each side.
                p = min(max(heads / 100, 1e-9), 1 - 1e-9)
                raw = RawOutput(top_logprobs=[("A", math.log(p)), ("B", math.log(1 - p))])
            on_output(job, prompt, raw)

    def close(self):
        pass


def test_prompt_states_the_bias_and_differs_by_method():
    prompts = {m: coin.coin_prompt(0.7, m) for m in ("logprobs", "sequence", "verbalize")}
    for prompt in prompts.values():
        assert "70%" in prompt.text and "30%" in prompt.text
        assert prompt.options == ("Heads", "Tails")
    assert len({p.sha256 for p in prompts.values()}) == 3
    with pytest.raises(ValueError, match="between 0 and 1"):
        coin.coin_prompt(1.5, "sequence")
    with pytest.raises(ValueError, match="unknown expression method"):
        coin.coin_prompt(0.5, "tarot")


def test_run_coin_with_a_perfect_coin(tmp_path):
    backend = PerfectCoinBackend()
    summary = coin.run_coin(backend, tmp_path, seed=3, samples=2, progress=False)
    # 11 stated p x (1 log-prob + 2 sequence + 2 verbalize samples).
    assert summary["asked"] == summary["written"] == 55
    records = RecordStore(tmp_path).records()
    assert {r.dataset for r in records} == {coin.COIN_DATASET}
    assert all(r.parse_status == "ok" for r in records)
    points = {(p["method"], p["stated_p"]): p for p in coin.coin_points(records)}
    assert len(points) == 33
    for stated in coin.STATED_PROBABILITIES:
        assert points[("verbalize", stated)]["expressed_p"] == pytest.approx(stated)
        assert points[("logprobs", stated)]["expressed_p"] == pytest.approx(stated, abs=1e-6)
        # 30 flips can only express multiples of 1/30.
        assert points[("sequence", stated)]["expressed_p"] == pytest.approx(round(30 * stated) / 30)
        assert points[("sequence", stated)]["n"] == 2
    manifest = RecordStore(tmp_path).manifest()
    assert manifest["experiment"] == "biased_coin" and manifest["seed"] == 3 and manifest["samples"] == 2
    stem = tmp_path / coin.COIN_FILE_STEM
    for suffix in (".csv", ".json", ".png", ".pdf"):
        assert stem.with_suffix(suffix).stat().st_size > 0
    # A second run finds every record and asks nothing.
    again = coin.run_coin(backend, tmp_path, seed=3, samples=2, progress=False)
    assert again["asked"] == 0 and len(backend.prompts) == 55


def test_samples_get_distinct_seeds():
    work = coin.plan_coin_jobs("fake:x", methods=["sequence"], probabilities=[0.5], samples=3, seed=0)
    assert len({job.seed for job, _ in work}) == 3
    assert len({job.key for job, _ in work}) == 3


def test_coin_command_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    from distalign_data import cli

    out = tmp_path / "coin-run"
    argv = ["coin", "--model", f"hf:{tiny_model_dir}", "--out", str(out), "--samples", "2",
            "--max-new-tokens", "12", "--seed", "5", "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["asked"] == summary["written"] == 55
    records = RecordStore(out).records()
    assert len(records) == 55 and {r.model for r in records} == {f"hf:{tiny_model_dir}"}
    # A local model gives log-probs over its whole vocabulary, so A and B are always found.
    logprob_records = [r for r in records if r.method == "logprobs"]
    assert len(logprob_records) == 11 and all(r.parse_status == "ok" for r in logprob_records)
    table = json.loads((out / f"{coin.COIN_FILE_STEM}.json").read_text())["rows"]
    points = coin.coin_points(records)
    assert len(table) == len(points) == 33
    for written, expected in zip(table, points):
        assert written["stated_p"] == expected["stated_p"] and written["n"] == expected["n"]
        if expected["n"]:
            assert written["expressed_p"] == pytest.approx(expected["expressed_p"])
    assert (out / f"{coin.COIN_FILE_STEM}.png").stat().st_size > 10_000
    assert RecordStore(out).manifest()["seed"] == 5


@pytest.mark.mirror
def test_import_the_papers_coin_outputs(mirror_source, tmp_path):
    summary = coin.import_paper_coin(tmp_path, source=mirror_source)
    records = RecordStore(tmp_path).records()
    assert summary["imported"] == summary["written"] == len(records) > 0
    assert {r.model for r in records} == {"gpt-4", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-1106"}
    points = {(p["model"], p["method"], p["stated_p"]): p for p in coin.coin_points(records)}
    # Independently: the share of 'H' in each stored GPT-4 response to the p = 0.5 sequence prompt.
    entries = json.loads((mirror_source / "results/biased_coin/gpt-4/biased_coin_seq_benchmark.json").read_text())
    responses = [r for e in entries.values() if e["expected_results"]["h"] == 0.5 for r in e["response"]]
    expected = sum(r.count("H") / (r.count("H") + r.count("T")) for r in responses) / len(responses)
    assert points[("gpt-4", "sequence", 0.5)]["expressed_p"] == pytest.approx(expected)
    assert points[("gpt-4", "sequence", 0.5)]["n"] == len(responses)
    # Log-probs: both phrasings of p = 0.3 put almost no mass on heads (the paper's step-shaped curve).
    assert points[("gpt-4", "logprobs", 0.3)]["n"] == 2 and points[("gpt-4", "logprobs", 0.3)]["expressed_p"] < 0.01
    assert (tmp_path / f"{coin.COIN_FILE_STEM}.png").stat().st_size > 10_000
