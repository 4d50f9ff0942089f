"""``distalign run``: argument handling, option forwarding, and a real run followed by ``distalign score``."""

from __future__ import annotations

import json

import pytest

from distalign_data import cli
from distalign_data.model_runners import base
from distalign_data.model_runners.base import Capabilities
from distalign_data.model_runners.base import RawOutput
from distalign_data.records import RecordStore
from distalign_data.sources import UPSTREAM_COMMIT
from tests.tiny_model_helpers import toy_rows


class EchoBackend:
    """Answers every prompt with its first option (letter A), and remembers its options."""

    name = "echo"
    capabilities = Capabilities(logprobs=False, max_top_logprobs=None)

    def __init__(self, spec, **options):
        self.spec, self.options, self.prompts = spec, options, 0

    def sampling_parameters(self, method):
        return {"temperature": 1.0}

    def generate(self, work, on_output):
        for job, prompt in work:
            self.prompts += 1
            text = "A A A" if job.method == "sequence" else '{"A": 100}'
            on_output(job, prompt, RawOutput(text=text, usage={"tokens": 2}))

    def close(self):
        pass


@pytest.fixture
def echo(monkeypatch):
    made = []

    def fake_backend(spec, **options):
        made.append(EchoBackend(spec, **options))
        return made[-1]

    def fake_rows(name, source=None):
        return toy_rows(2, dataset=name)

    monkeypatch.setattr(base, "get_backend", fake_backend)
    monkeypatch.setattr("distalign_data.benchmarks.load_rows", fake_rows)
    return made


def test_run_writes_records_and_forwards_backend_options(echo, tmp_path, capsys):
    argv = [
        "run", "--model", "echo:x", "--datasets", "nyt_books,opinionqa_subset", "--methods", "sequence,verbalize",
        "--steering", "none,persona", "--out", str(tmp_path), "--limit", "3", "--seed", "5",
        "--concurrency", "4", "--rpm", "60", "--api-key-env", "MY_KEY", "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    (backend,) = echo
    assert backend.options == {"concurrency": 4, "rpm": 60.0, "api_key_env": "MY_KEY"}
    records = RecordStore(tmp_path).records()
    # 3 rows per dataset (limit) x 2 methods x 2 steering methods.
    assert len(records) == 2 * 3 * 2 * 2
    assert {r.dataset for r in records} == {"nyt_books", "opinionqa_subset"}
    assert all(r.distribution[0] == 1.0 and r.seed == 5 for r in records)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Per dataset and method: q0's two groups share one no-steering prompt, q1/Democrat has its
    # own, and each of the 3 rows has a persona prompt: 5 prompts.
    assert summary["written"] == 24 and summary["unique_prompts"] == backend.prompts == 2 * 2 * 5
    manifest = RecordStore(tmp_path).manifest()
    assert manifest["seed"] == 5 and manifest["datasets"]["nyt_books"]["rows"] == 3
    assert "MY_KEY" not in json.dumps(manifest)


def test_run_resumes_without_new_requests(echo, tmp_path):
    argv = ["run", "--model", "echo:x", "--datasets", "nyt_books", "--methods", "sequence", "--steering", "persona",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    cli.main(argv)
    cli.main(argv)
    assert [b.prompts for b in echo] == [4, 0]
    assert len(RecordStore(tmp_path).records()) == 4


def test_logprobs_on_a_backend_without_them_fails_before_any_work(echo, tmp_path, capsys):
    argv = ["run", "--model", "echo:x", "--datasets", "nyt_books", "--methods", "logprobs", "--out", str(tmp_path)]
    assert cli.main(argv) == 1
    assert "distalign run: row 'q0/Democrat': expression method 'logprobs' needs log-probabilities" in capsys.readouterr().err
    assert echo[0].prompts == 0 and not RecordStore(tmp_path).records()


def test_unknown_method_is_refused(echo, tmp_path, capsys):
    argv = ["run", "--model", "echo:x", "--datasets", "nyt_books", "--methods", "logprob", "--out", str(tmp_path)]
    assert cli.main(argv) == 1
    assert "unknown expression method 'logprob'" in capsys.readouterr().err
    # Refused before the backend (a model that may take minutes to load) is made.
    assert echo == []
    assert cli.main(argv[:5] + ["--steering", "task1", "--out", str(tmp_path)]) == 1
    assert "unknown steering method 'task1'" in capsys.readouterr().err
    assert cli.main(argv[:5] + ["--limit", "0", "--out", str(tmp_path)]) == 1
    assert "limit must be at least 1, got 0" in capsys.readouterr().err
    assert echo == []


@pytest.mark.mirror
def test_run_then_score_on_the_tiny_model(mirror_source, tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "RUN"
    argv = [
        "run", "--model", f"hf:{tiny_model_dir}", "--datasets", "opinionqa_subset,global_opinionqa_contentious,nyt_books",
        "--limit", "2", "--out", str(run_dir), "--source", str(mirror_source), "--max-new-tokens", "6", "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    records = RecordStore(run_dir).records()
    assert len(records) == 3 * 2 * 3 * 3
    assert {r.dataset for r in records} == {"opinionqa_subset", "global_opinionqa_contentious", "nyt_books"}
    assert all(r.parse_status != "failed" for r in records if r.method == "logprobs")
    # The model version the records came from (its files' hash, checked by hand in test_hf_runner.py).
    from distalign_data.model_runners.model_fingerprint import folder_sha256

    identity = RecordStore(run_dir).manifest()["response_identity"]
    assert identity == {"model_sha256": folder_sha256(tiny_model_dir), "rendering_version": 1}
    capsys.readouterr()
    assert cli.main(["score", str(run_dir)]) == 0
    assert f"hf:{tiny_model_dir}" in capsys.readouterr().out


class FailingBackend(EchoBackend):
    """Fails every request for good, and offers log-probs for at most 3 options."""

    name = "failing"
    capabilities = Capabilities(logprobs=True, max_top_logprobs=3)

    def generate(self, work, on_output):
        for job, prompt in work:
            self.prompts += 1
            on_output(job, prompt, RawOutput(error="HTTP 400: bad request"))


def test_failed_requests_become_failed_records_and_are_not_cached(tmp_path):
    rows = toy_rows(1)
    backend = FailingBackend("failing:x")
    summary = base.run(backend, rows, methods=["sequence"], steerings=["persona"], run_dir=tmp_path, seed=0, progress=False)
    assert (summary.failed, summary.written) == (2, 2)
    assert [(r.parse_status, r.parse_reason, r.distribution) for r in RecordStore(tmp_path).records()] == [
        ("failed", "HTTP 400: bad request", None)
    ] * 2
    from distalign_data.model_runners.cache import ResponseCache

    assert len(ResponseCache(tmp_path / "cache.sqlite")) == 0


def test_too_many_options_for_the_top_logprobs_limit_fails_before_any_work(tmp_path):
    rows = toy_rows(3)  # q2 has four options
    backend = FailingBackend("failing:x")
    with pytest.raises(ValueError, match=r"row 'q2/Democrat': 4 options but backend 'failing' returns at most 3"):
        base.run(backend, rows, methods=["logprobs"], steerings=["none"], run_dir=tmp_path, seed=0, progress=False)
    assert backend.prompts == 0


def test_usage_totals_accumulate_over_resumed_runs(tmp_path):
    rows = toy_rows(2)
    for count in (1, 2):
        base.run(EchoBackend("echo:x"), rows[: 2 * count], methods=["sequence"], steerings=["persona"], run_dir=tmp_path, seed=0, progress=False)
    # 2 prompts, then the 2 new ones of the second question: 4 requests of 2 tokens.
    assert RecordStore(tmp_path).manifest()["usage"] == {"tokens": 8}


class DyingBackend(EchoBackend):
    """Answers half the prompts, then looks at the run directory as a SIGKILL would leave it (no ``finally``)."""

    def generate(self, work, on_output):
        super().generate(work[: len(work) // 2], on_output)
        self.manifest_mid_run = RecordStore(self.run_dir).manifest()
        raise KeyboardInterrupt


def test_usage_reaches_the_manifest_during_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MANIFEST_FLUSH_S", 0.0)
    backend = DyingBackend("echo:x")
    backend.run_dir = tmp_path
    with pytest.raises(KeyboardInterrupt):
        base.run(backend, toy_rows(2), methods=["sequence"], steerings=["persona"], run_dir=tmp_path, seed=0, progress=False)
    # 4 persona prompts, half answered at 2 tokens each, already in the manifest before the run ended.
    assert backend.manifest_mid_run["usage"] == {"tokens": 4}
    assert backend.manifest_mid_run["upstream"]["commit"] == UPSTREAM_COMMIT
    # The resumed run adds its own usage once, not the flushed usage twice.
    base.run(EchoBackend("echo:x"), toy_rows(2), methods=["sequence"], steerings=["persona"], run_dir=tmp_path, seed=0, progress=False)
    assert RecordStore(tmp_path).manifest()["usage"] == {"tokens": 8}


def test_options_a_local_model_does_not_take_are_refused_in_one_line(tmp_path, capsys):
    argv = ["run", "--model", f"hf:{tmp_path}", "--datasets", "nyt_books", "--out", str(tmp_path / "run"), "--concurrency", "4"]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("option(s) concurrency do not apply to local models; "
                                                                     "they take batch_size, device, device_map, dtype, max_new_tokens")
    argv = ["run", "--model", f"hf:{tmp_path}/missing", "--datasets", "nyt_books", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 1
    assert f"no model folder at '{tmp_path}/missing'" in capsys.readouterr().err


def test_manifest_names_the_data_a_run_used(tmp_path):
    def manifest(rows, out):
        base.run(EchoBackend("echo:x"), rows, methods=["sequence"], steerings=["persona"], run_dir=tmp_path / out, seed=0,
                 limit=3, progress=False)
        return RecordStore(tmp_path / out).manifest()

    rows = toy_rows(2) + toy_rows(1, dataset="nyt_books")
    first = manifest(rows, "a")
    assert {name: entry["rows"] for name, entry in first["datasets"].items()} == {"opinionqa_subset": 3, "nyt_books": 2}
    assert first["limit"] == 3 and first["template_version"] == "distalign-prompts-2"
    # A changed reference distribution is a different data revision; a row beyond the limit is not part of the run.
    changed = [dict(r, distribution=[0.9, 0.1]) if r["id"] == "q0/Democrat" else r for r in rows]
    beyond = rows[:3] + [dict(rows[3], question="another text")] + rows[4:]  # the 4th opinionqa row
    hashes = {name: manifest(variant, name)["datasets"]["opinionqa_subset"]["rows_sha256"] for name, variant in (("c", changed), ("b", beyond))}
    assert hashes["c"] != first["datasets"]["opinionqa_subset"]["rows_sha256"]
    assert hashes["b"] == first["datasets"]["opinionqa_subset"]["rows_sha256"]
