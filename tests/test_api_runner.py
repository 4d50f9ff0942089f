"""The API runners against loopback servers: faults, crashes, secrets, capabilities, limits.

Every server answers from a scripted model (tests/api_servers.py) on 127.0.0.1.
Expected request counts are computed from the fault plans, independently of the
engine; timings are measured on the server side.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import api_servers as servers
from distalign_data.model_runners import base
from distalign_data.model_runners.api_engine import ApiConfigurationError
from distalign_data.model_runners.api_engine import RateLimiter
from distalign_data.model_runners.api_engine import RunLimitReached
from distalign_data.model_runners.api_engine import backoff_delay
from distalign_data.model_runners.api_engine import retry_after_seconds
from distalign_data.model_runners.api_engine import scrub
from distalign_data.model_runners.cache import CACHE_FILE
from distalign_data.prompts import render_prompt
from distalign_data.records import RecordStore

FAKE_KEY = "sk-distalign-FAKE-key-7Q2xN9vLp4"
KEY_VARIABLE = "DISTALIGN_TEST_KEY"
CHILD = Path(__file__).with_name("api_run_child.py")


def make_rows(n: int, *, n_options: int = 3, prefix: str = "q") -> list[dict]:
    options = [f"option {i}" for i in range(n_options)]
    return [
        {"id": f"{prefix}{i}/Male", "dataset": "opinionqa_subset", "question_id": f"{prefix}{i}",
         "question": f"Test question number {i}?", "options": options,
         "group_attribute": "SEX", "group": "Male", "few_shot": []}
        for i in range(n)
    ]


@pytest.fixture
def fake_key(monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def openai_server():
    server = servers.start_server("openai")
    yield server
    server.close()


@pytest.fixture
def anthropic_server(monkeypatch):
    server = servers.start_server("anthropic")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    yield server
    server.close()


def openai_backend(server, **options):
    options = {"api_key_env": KEY_VARIABLE, "timeout": 2.0, "backoff_base": 0.01, **options}
    return base.get_backend(f"openai-compatible:{server.url}#scripted-model", **options)


def run_rows(backend, rows, run_dir, methods=("sequence",)):
    return base.run(backend, rows, methods=list(methods), steerings=["persona"], run_dir=run_dir, seed=0, progress=False)


def job_map(backend, rows, methods):
    """job key -> (response cache key, server fingerprint of its request), computed without any request."""
    out = {}
    for job in base.plan_jobs(rows, list(methods), ["persona"], backend.spec, 0):
        prompt = render_prompt(job.row, job.method, job.steering, seed=job.seed)
        out[job.key] = (base.response_key(backend, job, prompt), servers.fingerprint(backend.build_request(job, prompt)))
    return out


def attempts_needed(plan, fp: str, cap: int) -> int:
    """How many attempts the fault plan lets a request take before an answer (cap if it never gets one)."""
    for attempt in range(1, cap + 1):
        if plan(fp, attempt) is None:
            return attempt
    return cap


# ---------------------------------------------------------------------------
# fault tolerance


def test_assorted_faults_every_record_present_each_retried_within_cap(tmp_path, fake_key, openai_server):
    rows = make_rows(30)
    methods = ("sequence", "logprobs")
    backend = openai_backend(openai_server, concurrency=8, max_attempts=4, timeout=2.0)
    jobs = job_map(backend, rows, methods)
    doomed_jobs = sorted(jobs)[:2]
    doomed = frozenset(jobs[k][1] for k in doomed_jobs)
    plan = servers.assorted(0.2, seed=7, max_failures=2, doomed=doomed)
    openai_server.settings.faults = plan
    openai_server.settings.timeout_sleep_s = 3.0  # the timeout must never fire on a slow healthy request: counts are exact

    summary = run_rows(backend, rows, tmp_path / "faulty", methods)

    records = {r.key: r for r in RecordStore(tmp_path / "faulty").records()}
    assert set(records) == set(jobs) and summary.written == len(jobs) == 60
    for key, (_cache_key, fp) in jobs.items():
        expected = 4 if fp in doomed else attempts_needed(plan, fp, 4)
        assert openai_server.counts[fp] == expected, key
        if fp in doomed:
            assert records[key].parse_status == "failed"
            assert records[key].parse_reason.startswith("failed after 4 attempts")
        else:
            assert records[key].parse_status == "ok", records[key].parse_reason
    faults = [e.fault for e in openai_server.events if e.fault]
    assert set(faults) >= {"429", "500", "timeout", "malformed", "missing_fields", "disconnect"}
    first_attempts = [e for e in openai_server.events if e.attempt == 1 and e.fingerprint not in doomed]
    assert 0.1 < sum(e.fault is not None for e in first_attempts) / len(first_attempts) < 0.35

    # The answers that got through are those of a fault-free run.
    openai_server.settings.faults = servers.no_faults
    run_rows(openai_backend(openai_server), rows, tmp_path / "clean", methods)
    clean = {r.key: r.comparable() for r in RecordStore(tmp_path / "clean").records()}
    for key, record in records.items():
        if key not in doomed_jobs:
            assert record.comparable() == clean[key]


@pytest.mark.parametrize("fault", servers.TRANSIENT_FAULTS)
def test_each_transient_fault_is_retried_up_to_the_cap_then_recorded_as_failed(tmp_path, fake_key, openai_server, fault):
    openai_server.settings.faults = servers.always(fault)
    openai_server.settings.timeout_sleep_s = 0.5
    backend = openai_backend(openai_server, max_attempts=3, timeout=0.25)
    run_rows(backend, make_rows(1), tmp_path)
    (record,) = RecordStore(tmp_path).records()
    assert openai_server.request_count == 3
    assert record.parse_status == "failed" and record.distribution is None
    assert record.parse_reason.startswith("failed after 3 attempts; last error:")
    assert backend.describe()["api_requests"] == {"requests_sent": 3, "retries": 2, "failed_requests": 1, "responses_without_usage": 0}


@pytest.mark.parametrize("fault", ["429", "503", "malformed", "truncated", "missing_fields", "disconnect"])
def test_anthropic_faults_are_retried_up_to_the_cap(tmp_path, anthropic_server, fault):
    anthropic_server.settings.faults = servers.first_attempts(fault, 1)
    anthropic_server.settings.retry_after_s = 0.01
    backend = base.get_backend("anthropic:claude-3-haiku-20240307", max_attempts=2, backoff_base=0.01)
    run_rows(backend, make_rows(2), tmp_path / "recovered")
    assert [r.parse_status for r in RecordStore(tmp_path / "recovered").records()] == ["ok", "ok"]
    assert anthropic_server.request_count == 4
    anthropic_server.reset()
    anthropic_server.settings.faults = servers.always(fault)
    run_rows(backend, make_rows(2), tmp_path / "failed")
    records = RecordStore(tmp_path / "failed").records()
    assert [r.parse_status for r in records] == ["failed", "failed"] and anthropic_server.request_count == 4
    assert records[0].parse_reason.startswith("failed after 2 attempts")


def test_a_rejected_request_is_recorded_once_without_retry(tmp_path, fake_key, openai_server):
    openai_server.settings.faults = servers.always("echo_key")
    run_rows(openai_backend(openai_server, max_attempts=5), make_rows(2), tmp_path)
    records = RecordStore(tmp_path).records()
    assert openai_server.request_count == 2
    assert [r.parse_status for r in records] == ["failed", "failed"]
    assert records[0].parse_reason.startswith("request rejected: HTTP 400")


@pytest.mark.parametrize("fault, status", [("unauthorized", "HTTP 401"), ("unsupported_parameter", "HTTP 400")])
def test_a_refused_configuration_stops_the_run_without_records(tmp_path, fake_key, openai_server, fault, status):
    openai_server.settings.faults = servers.always(fault)
    with pytest.raises(ApiConfigurationError, match=status) as caught:
        run_rows(openai_backend(openai_server, concurrency=2), make_rows(6), tmp_path)
    assert FAKE_KEY not in str(caught.value) and caught.value.__cause__ is None
    assert RecordStore(tmp_path).records() == []
    assert openai_server.request_count <= 2  # the requests already in flight, nothing after


# ---------------------------------------------------------------------------
# crash and resume


def _records_count(run_dir: Path) -> int:
    path = run_dir / "records.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _cached_keys(run_dir: Path) -> set[str]:
    if not (run_dir / CACHE_FILE).exists():
        return set()
    with sqlite3.connect(run_dir / CACHE_FILE) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM responses")}


def test_killed_runs_resume_to_the_uninterrupted_result_without_asking_twice(tmp_path, fake_key, openai_server):
    openai_server.settings.latency_s = 0.04
    rows = make_rows(24)
    methods = ("sequence", "logprobs")
    rows_path = tmp_path / "rows.json"
    rows_path.write_text(json.dumps(rows))
    backend = openai_backend(openai_server)
    jobs = job_map(backend, rows, methods)
    fingerprint_of_cache_key = {cache_key: fp for cache_key, fp in jobs.values()}
    run_dir = tmp_path / "killed"
    env = {**os.environ, KEY_VARIABLE: FAKE_KEY, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, str(CHILD), backend.spec, str(rows_path), str(run_dir), ",".join(methods), "4"]

    # Kill once the server has seen the first request (nothing recorded yet), then
    # while a response is cached but its record not yet written (the child delays
    # each record write by 50 ms to widen that window), then part-way through, and
    # then let a last run finish.
    def first_request(before):
        return openai_server.request_count > before

    def cached_not_recorded(_before):
        return len(_cached_keys(run_dir)) > _records_count(run_dir)

    def part_way(_before):
        return _records_count(run_dir) >= 30

    kills = []
    checked = 0
    snapshot = None
    for kill_when in (first_request, cached_not_recorded, part_way, None):
        before = openai_server.request_count
        child_env = {**env, "API_CHILD_APPEND_DELAY": "0.05" if kill_when is cached_not_recorded else "0"}
        child = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while kill_when is not None and time.monotonic() < deadline and child.poll() is None:
            if kill_when(before):
                child.send_signal(signal.SIGKILL)
                kills.append(kill_when.__name__)
                break
            time.sleep(0.002)
        output = child.communicate(timeout=60)[0].decode()
        assert FAKE_KEY not in output
        if kill_when is None:
            assert child.returncode == 0, output[-2000:]
        time.sleep(0.1)  # the server finishes answering a dead client's requests
        if snapshot is not None:
            cached_fps, counts = snapshot
            for fp in cached_fps:
                assert openai_server.counts[fp] == counts[fp], "a cached response was requested again"
            checked += len(cached_fps)
        cached = _cached_keys(run_dir)
        if kill_when is cached_not_recorded:
            assert len(cached) > _records_count(run_dir)  # the state this kill was after
        snapshot = ({fingerprint_of_cache_key[k] for k in cached}, dict(openai_server.counts))
    assert kills == ["first_request", "cached_not_recorded", "part_way"] and checked > 0

    interrupted = RecordStore(run_dir).records()
    assert len(interrupted) == len(jobs) and len({r.key for r in interrupted}) == len(jobs)
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    assert len({json.loads(line)["key"] for line in lines}) == len(lines) == len(jobs)  # exactly one record per job

    run_rows(backend, rows, tmp_path / "uninterrupted", methods)
    uninterrupted = {r.key: r.comparable() for r in RecordStore(tmp_path / "uninterrupted").records()}
    assert {r.key: r.comparable() for r in interrupted} == uninterrupted


def test_the_cache_key_follows_every_part_of_the_request(monkeypatch):
    """Two requests share a response cache key exactly when they would send the same thing to the same server."""
    from distalign_data.model_runners import cache
    from distalign_data.model_runners import openai_api

    monkeypatch.setenv(KEY_VARIABLE, FAKE_KEY)
    parts_seen = []
    real_cache_key = cache.cache_key
    monkeypatch.setattr(cache, "cache_key", lambda **parts: parts_seen.append(parts) or real_cache_key(**parts))
    rows = make_rows(2) + [dict(make_rows(1)[0], group="Female", id="q0/Female")]  # a no-steering prompt shared by two rows
    sent = []  # (response cache key, (server, request body))
    for url, model, max_tokens, temperature, top in (
        ("http://127.0.0.1:9/v1", "m", 400, 1.0, 20),
        ("http://127.0.0.1:9/v1", "m2", 400, 1.0, 20),  # another model
        ("http://127.0.0.1:8/v1", "m", 400, 1.0, 20),  # another server
        ("http://127.0.0.1:9/v1", "m", 300, 1.0, 20),  # max_tokens
        ("http://127.0.0.1:9/v1", "m", 400, 0.7, 20),  # temperature
        ("http://127.0.0.1:9/v1", "m", 400, 1.0, 10),  # top_logprobs
    ):
        monkeypatch.setattr(openai_api, "MAX_TOKENS", max_tokens)
        monkeypatch.setattr(openai_api, "TEMPERATURE", temperature)
        monkeypatch.setattr(openai_api, "MAX_TOP_LOGPROBS", top)
        backend = base.get_backend(f"openai-compatible:{url}#{model}", api_key_env=KEY_VARIABLE)
        for seed in (0, 1):
            for job in base.plan_jobs(rows, ["sequence", "logprobs"], ["none", "persona"], backend.spec, seed):
                prompt = render_prompt(job.row, job.method, job.steering, seed=job.seed)
                sent.append((base.response_key(backend, job, prompt), (url, servers.fingerprint(backend.build_request(job, prompt)))))
    keys, requests = {k for k, _ in sent}, {r for _, r in sent}
    assert len(keys) == len(requests) == len(set(sent))  # one key per distinct request, and back
    # Repeats: per configuration and seed, q0's two groups share 2 no-steering prompts (6 * 2 * 2); max_tokens does
    # not change a log-prob request (always 1) nor top_logprobs a sequence one: 5 distinct prompts each, per seed.
    assert len(sent) - len(requests) == 6 * 2 * 2 + 5 * 2 + 5 * 2
    assert len(parts_seen) == len(sent) and all(FAKE_KEY not in json.dumps(parts) for parts in parts_seen)


# ---------------------------------------------------------------------------
# secrets


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_the_key_reaches_no_file_log_or_exception(tmp_path, fake_key, openai_server, anthropic_server, caplog):
    caplog.set_level(logging.DEBUG)
    # Every kind of failure, including a server that echoes the request's headers
    # back in its error message, and one that refuses the key.
    plan = servers.assorted(0.3, seed=3, kinds=servers.TRANSIENT_FAULTS + ("echo_key",))
    openai_server.settings.faults = plan
    anthropic_server.settings.faults = plan
    openai_server.settings.timeout_sleep_s = anthropic_server.settings.timeout_sleep_s = 0.5
    rows = make_rows(12)
    run_dir, cache_dir = tmp_path / "run", tmp_path / "cache"
    backend = openai_backend(openai_server, max_attempts=3, timeout=0.25)
    base.run(backend, rows, methods=["sequence", "logprobs"], steerings=["persona"], run_dir=run_dir, seed=0,
             cache_dir=cache_dir, progress=False)
    anthropic = base.get_backend("anthropic:claude-3-haiku-20240307", max_attempts=3, timeout=0.25, backoff_base=0.01)
    base.run(anthropic, rows, methods=["verbalize"], steerings=["persona"], run_dir=tmp_path / "run_anthropic",
             seed=0, progress=False)
    openai_server.settings.faults = servers.always("unauthorized")
    with pytest.raises(ApiConfigurationError) as refused:
        run_rows(backend, make_rows(1, prefix="other"), tmp_path / "refused")

    # The key was really sent, and really echoed back: the checks below can fail.
    assert any(FAKE_KEY in json.dumps(h) for h in openai_server.headers_seen + anthropic_server.headers_seen)
    echoed = [r for r in RecordStore(run_dir).records() if "HTTP 400" in r.parse_reason]
    assert echoed and all("[redacted]" in r.parse_reason for r in echoed)
    assert _files_containing(tmp_path, b"option 1")  # the grep does see the files' content
    assert _files_containing(tmp_path, FAKE_KEY.encode()) == []
    assert FAKE_KEY not in caplog.text
    error = refused.value
    assert FAKE_KEY not in f"{error} {error!r} {error.__cause__!r} {error.__context__!r}"
    for manifest in tmp_path.rglob("manifest.json"):
        assert "api_requests" in manifest.read_text()


def test_a_base_url_with_credentials_or_a_query_in_the_environment_is_refused_without_echoing_them(monkeypatch):
    # The HTTP client logs request URLs and would turn user info into a Basic
    # authorization header a proxy may echo: such a URL never gets that far.
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    for variable, spec in (("OPENAI_BASE_URL", "openai:gpt-4o-mini"), ("ANTHROPIC_BASE_URL", "anthropic:claude-3-haiku-20240307")):
        for url in ("http://user:pw-7Hq2Lm9Xz4@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?token=pw-7Hq2Lm9Xz4"):
            monkeypatch.setenv(variable, url)
            with pytest.raises(ValueError, match=f"{spec}: {variable}: the base URL must not carry credentials or a query") as refused:
                base.get_backend(spec)
            assert "pw-7Hq2Lm9Xz4" not in str(refused.value)
        monkeypatch.delenv(variable)


def test_keys_come_from_the_environment_only(monkeypatch, openai_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="set the environment variable OPENAI_API_KEY"):
        base.get_backend("openai:gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with pytest.raises(ValueError, match="MISSING_VARIABLE"):
        base.get_backend(f"openai-compatible:{openai_server.url}#m", api_key_env="MISSING_VARIABLE")
    # A compatible server never gets the OpenAI key by default.
    backend = base.get_backend(f"openai-compatible:{openai_server.url}#m")
    assert backend._api_key == "EMPTY"
    with pytest.raises(ValueError, match="must not carry credentials"):
        base.get_backend("openai-compatible:http://user:secret@127.0.0.1:9/v1#m")
    with pytest.raises(ValueError, match="batch_size"):
        base.get_backend("openai:gpt-4o", batch_size=8)


def test_scrub_removes_known_secrets_and_credential_shapes():
    text = f"key={FAKE_KEY} 'Authorization': 'Bearer abc.def' x-api-key: zzz123 sk-live-ABCDEFGH"
    cleaned = scrub(text, secrets=(FAKE_KEY,))
    for secret in (FAKE_KEY, "abc.def", "zzz123", "sk-live-ABCDEFGH"):
        assert secret not in cleaned
    assert cleaned.count("[redacted]") == 4


# ---------------------------------------------------------------------------
# capabilities


def test_anthropic_refuses_logprobs_before_any_request(tmp_path, anthropic_server):
    backend = base.get_backend("anthropic:claude-3-haiku-20240307")
    rows = make_rows(2)
    with pytest.raises(ValueError, match="'logprobs' needs log-probabilities"):
        base.run(backend, rows, methods=["sequence", "logprobs"], steerings=["persona"], run_dir=tmp_path, seed=0,
                 progress=False)
    jobs = base.plan_jobs(rows, ["logprobs"], ["persona"], backend.spec, 0)
    with pytest.raises(ValueError, match="log-probabilities"):
        backend.generate([(j, render_prompt(j.row, j.method, j.steering, seed=0)) for j in jobs], lambda *a: None)
    assert anthropic_server.request_count == 0 and RecordStore(tmp_path).records() == []


def test_logprobs_refused_for_more_options_than_top_logprobs_covers(tmp_path, fake_key, openai_server):
    backend = openai_backend(openai_server)
    assert backend.capabilities.max_top_logprobs == 20
    rows = make_rows(1, n_options=20) + make_rows(1, n_options=21, prefix="wide")
    with pytest.raises(ValueError, match="row 'wide0/Male': 21 options .* at most 20"):
        run_rows(backend, rows, tmp_path, ["logprobs"])
    assert openai_server.request_count == 0
    run_rows(backend, rows[:1], tmp_path, ["logprobs"])
    (record,) = RecordStore(tmp_path).records()
    assert record.parse_status == "ok" and len(record.distribution) == 20


def test_anthropic_sequence_and_verbalize(tmp_path, anthropic_server):
    backend = base.get_backend("anthropic:claude-3-haiku-20240307")
    summary = base.run(backend, make_rows(3), methods=["sequence", "verbalize"], steerings=["persona"],
                       run_dir=tmp_path, seed=0, progress=False)
    records = RecordStore(tmp_path).records()
    assert summary.written == 6 and all(r.parse_status == "ok" for r in records)
    body = json.loads(json.dumps(backend.build_request(*_first_work(backend, make_rows(1)))))
    assert body["temperature"] == 1.0 and body["system"] and all(m["role"] == "user" for m in body["messages"])
    assert set(anthropic_server.counts) >= {servers.fingerprint(body)}  # the body the server saw, temperature included
    usage = records[0].usage
    assert usage["estimated_cost_usd"] == pytest.approx((usage["input_tokens"] * 0.25 + usage["output_tokens"] * 1.25) / 1e6)
    assert RecordStore(tmp_path).manifest()["usage"]["input_tokens"] == sum(r.usage["input_tokens"] for r in records)


def test_openai_spec_takes_the_openai_key_and_prices_the_model(tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)  # the SDK's own setting
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    backend = base.get_backend("openai:gpt-4o-mini")
    run_rows(backend, make_rows(2), tmp_path, ["logprobs"])
    records = RecordStore(tmp_path).records()
    assert [r.parse_status for r in records] == ["ok", "ok"]
    assert all(h.get("authorization") == f"Bearer {FAKE_KEY}" for h in openai_server.headers_seen)
    body = json.loads(json.dumps(backend.build_request(*_first_work(backend, make_rows(1), "logprobs"))))
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 20)
    usage = records[0].usage
    assert usage["estimated_cost_usd"] == pytest.approx((usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1e6)
    info = RecordStore(tmp_path).manifest()["backend_info"]
    assert info["api_requests"]["requests_sent"] == 2 and info["price_usd_per_mtok"] == [0.15, 0.6]


def _first_work(backend, rows, method="sequence"):
    job = base.plan_jobs(rows, [method], ["persona"], backend.spec, 0)[0]
    return job, render_prompt(job.row, job.method, job.steering, seed=job.seed)


# ---------------------------------------------------------------------------
# limits


def test_retry_after_is_honoured(tmp_path, fake_key, openai_server):
    openai_server.settings.faults = servers.first_attempts("429", 1)
    openai_server.settings.retry_after_s = 0.6  # sent as retry-after-ms: 600 and Retry-After: 1
    run_rows(openai_backend(openai_server, backoff_base=0.001), make_rows(1), tmp_path)
    first, second = openai_server.events
    waited = second.received_at - first.answered_at
    assert 0.58 <= waited < 0.9  # the millisecond header, not the back-off (~1 ms) nor the rounded 1 s
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "Retry-After": "2"}) == 0.25
    assert 9 < retry_after_seconds({"Retry-After": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 11))}) <= 11
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"Retry-After": "86400"}) == 300.0  # capped


def test_a_429_pauses_every_request(tmp_path, fake_key, openai_server):
    rows = make_rows(6)
    backend = openai_backend(openai_server, concurrency=6)
    doomed = {fp for _key, fp in list(job_map(backend, rows, ["sequence"]).values())[:1]}
    openai_server.settings.faults = lambda fp, attempt: "429" if fp in doomed and attempt == 1 else None
    openai_server.settings.retry_after_s = 0.4
    openai_server.settings.latency_s = 0.05
    run_rows(backend, rows, tmp_path)
    limited = next(e for e in openai_server.events if e.fault == "429")
    later = [e for e in openai_server.events if e.received_at > limited.answered_at]
    assert later and min(e.received_at for e in later) - limited.answered_at >= 0.38


def test_concurrency_bounds_requests_in_flight(tmp_path, fake_key, openai_server):
    openai_server.settings.latency_s = 0.05
    run_rows(openai_backend(openai_server, concurrency=3), make_rows(12), tmp_path)
    assert openai_server.max_in_flight == 3 and openai_server.request_count == 12


def test_requests_per_minute_limit(tmp_path, fake_key, openai_server):
    # 1,800 a minute = 30 a second with a bucket of one second's worth: 30 at once,
    # then one every 1/30 s, so the 60th request leaves 1 s after the start, and
    # no more than 30 + 15 requests can leave in the first half second. (Measured
    # from the start of the run: a request reaches the server after it leaves.)
    started = time.monotonic()
    run_rows(openai_backend(openai_server, concurrency=64, rpm=1800), make_rows(60), tmp_path)
    times = sorted(e.received_at - started for e in openai_server.events)
    assert times[-1] >= 1.0 and times[-1] - times[0] < 1.5, times
    assert sum(t < 0.5 for t in times) <= 30 + 15 + 1, times


def test_rate_limiter_tokens():
    import asyncio

    async def measure():
        limiter = RateLimiter(600, burst=2)  # 10 units a second, a bucket of 2
        started = time.monotonic()
        marks = []
        for amount in (2, 1, 5, 1):
            await limiter.acquire(amount)
            marks.append(time.monotonic() - started)
        return marks

    marks = asyncio.run(measure())
    # 2 at once; 1 after 0.1 s of refill; 5 (more than the bucket) when the bucket
    # is full again (0.2 s later), leaving a debt of 3; 1 after 0.4 s more.
    expected = [0.0, 0.1, 0.3, 0.7]
    assert all(e - 0.01 <= m < e + 0.1 for m, e in zip(marks, expected)), marks


def test_max_requests_stops_and_a_rerun_resumes(tmp_path, fake_key, openai_server):
    rows = make_rows(10)
    with pytest.raises(RunLimitReached, match="max_requests=4 reached; 6 of 10 requests were not sent"):
        run_rows(openai_backend(openai_server, concurrency=2, max_requests=4), rows, tmp_path)
    assert openai_server.request_count == 4 and len(RecordStore(tmp_path).records()) == 4
    run_rows(openai_backend(openai_server, concurrency=2), rows, tmp_path)
    assert openai_server.request_count == 10 and max(openai_server.counts.values()) == 1
    assert len(RecordStore(tmp_path).records()) == 10


def test_budget_stops_before_overspending(tmp_path, fake_key, openai_server):
    with pytest.raises(ValueError, match="budget needs the price"):
        openai_backend(openai_server, budget=1.0)
    prices = {"scripted-model": [1000.0, 1000.0]}  # USD per million tokens: ~0.15 USD a request
    backend = openai_backend(openai_server, concurrency=1, budget=1.0, prices=prices)
    with pytest.raises(RunLimitReached, match="budget=1.0 USD reached"):
        run_rows(backend, make_rows(10), tmp_path)
    records = RecordStore(tmp_path).records()
    spent = sum(r.usage["estimated_cost_usd"] for r in records)
    costs = [(r.usage["input_tokens"] + r.usage["output_tokens"]) * 1000 / 1e6 for r in records]
    assert spent == pytest.approx(sum(costs)) and spent <= 1.0
    assert 0 < len(records) == openai_server.request_count < 10
    # The next request's worst case (half a token per prompt character, plus
    # max_tokens=400) would have crossed the budget; one fewer request would not.
    job, prompt = _first_work(backend, make_rows(10)[len(records):])
    chars = sum(len(m["content"]) for m in prompt.messages)
    worst = (math.ceil(chars / 2) + 400) * 1000 / 1e6
    assert spent + worst > 1.0 >= spent - costs[-1] + worst


def test_backoff_is_exponential_jittered_and_seeded():
    delays = [backoff_delay(a, base=0.5, cap=4.0, rng=random.Random(f"7:k:{a}")) for a in range(1, 7)]
    assert delays == [backoff_delay(a, base=0.5, cap=4.0, rng=random.Random(f"7:k:{a}")) for a in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert delays != [backoff_delay(a, base=0.5, cap=4.0, rng=random.Random(f"8:k:{a}")) for a in range(1, 7)]


# ---------------------------------------------------------------------------
# through the command line


def test_distalign_run_forwards_the_api_options(tmp_path, fake_key, openai_server, monkeypatch, capsys):
    from distalign_data import cli

    monkeypatch.setattr("distalign_data.benchmarks.load_rows", lambda name, source=None: make_rows(3))
    openai_server.settings.faults = servers.always("500")
    def argv(out, *options):
        return ["run", "--model", f"openai-compatible:{openai_server.url}#m", "--datasets", "opinionqa_subset",
                "--methods", "sequence", "--steering", "persona", "--out", str(tmp_path / out), "--no-progress",
                "--api-key-env", KEY_VARIABLE, *options]

    assert cli.main(argv("run", "--concurrency", "2", "--max-attempts", "2", "--timeout", "1")) == 0
    records = RecordStore(tmp_path / "run").records()
    assert [r.parse_reason.split(";")[0] for r in records] == ["failed after 2 attempts"] * 3
    assert openai_server.request_count == 6 and openai_server.max_in_flight <= 2
    engine = RecordStore(tmp_path / "run").manifest()["backend_info"]["engine"]
    assert (engine["concurrency"], engine["max_attempts"], engine["timeout"]) == (2, 2, 1.0)

    openai_server.settings.faults = servers.no_faults
    capsys.readouterr()
    assert cli.main(argv("limited", "--concurrency", "1", "--max-requests", "1")) == 1
    assert "m: max_requests=1 reached; 2 of 3 requests were not sent" in capsys.readouterr().err
    assert len(RecordStore(tmp_path / "limited").records()) == 1
    # The manifest is written even though the limit stopped the run.
    assert RecordStore(tmp_path / "limited").manifest()["backend_info"]["engine"]["concurrency"] == 1
    # A budget for a model without a built-in price takes the price from --prices.
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": [2.0, 4.0]}))
    capsys.readouterr()
    assert cli.main(argv("budget", "--budget", "1")) == 1
    assert "--prices FILE" in capsys.readouterr().err
    assert cli.main(argv("priced", "--budget", "1", "--prices", str(prices))) == 0
    info = RecordStore(tmp_path / "priced").manifest()["backend_info"]
    assert (info["price_usd_per_mtok"], info["engine"]["budget"]) == ([2.0, 4.0], 1.0)
    prices.write_text("[1, 2]")
    assert cli.main(argv("badprices", "--budget", "1", "--prices", str(prices))) == 1
    assert "prices file: expected a JSON object" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# the server in the cache key


def test_openai_base_url_from_the_environment_keys_the_cache_and_names_the_server(tmp_path, monkeypatch):
    """Answers of one server are never served for another; the manifest names the server actually asked."""
    import openai

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    first, second = servers.start_server("openai"), servers.start_server("openai")
    rows, cache_dir = make_rows(3), tmp_path / "shared-cache"
    try:
        summaries = {}
        for name, url in (("first", first.url), ("second", second.url), ("first-again", first.url + "/")):
            monkeypatch.setenv("OPENAI_BASE_URL", url)
            backend = base.get_backend("openai:gpt-4o-mini", timeout=2.0)
            summaries[name] = base.run(backend, rows, methods=["sequence"], steerings=["persona"], run_dir=tmp_path / name,
                                       seed=0, cache_dir=cache_dir, progress=False)
            assert RecordStore(tmp_path / name).manifest()["response_identity"] == {"base_url": url.rstrip("/")}
        assert first.request_count == second.request_count == 3  # the second server was asked, not the cache
        assert (summaries["second"].from_cache, summaries["first-again"].from_cache) == (0, 3)
        # Another server's answers are not filed under the first one's records either.
        monkeypatch.setenv("OPENAI_BASE_URL", second.url)
        with pytest.raises(ValueError, match=r"its records of openai:gpt-4o-mini were made with \{'base_url': 'http://127"):
            base.run(base.get_backend("openai:gpt-4o-mini"), make_rows(4), methods=["sequence"], steerings=["persona"],
                     run_dir=tmp_path / "first", seed=0, progress=False)
        assert second.request_count == 3 and len(RecordStore(tmp_path / "first").records()) == 3
    finally:
        first.close()
        second.close()

    # Unset, the key names the SDK's default server, which is where the client would send requests.
    monkeypatch.delenv("OPENAI_BASE_URL")
    default = base.get_backend("openai:gpt-4o-mini")
    sdk_default = str(openai.AsyncOpenAI(api_key=FAKE_KEY).base_url).rstrip("/")
    assert default.response_identity == {"base_url": sdk_default} and str(default._make_client().base_url).rstrip("/") == sdk_default

    # A gateway gets its own keys; the key's parts hold the URL but never the API key.
    from distalign_data.model_runners import cache

    monkeypatch.setenv("OPENAI_BASE_URL", "https://gateway.example:8443/v1/")
    gateway = base.get_backend("openai:gpt-4o-mini")
    parts_seen = []
    real_cache_key = cache.cache_key
    monkeypatch.setattr(cache, "cache_key", lambda **parts: parts_seen.append(parts) or real_cache_key(**parts))
    gateway_key = base.response_key(gateway, *_first_work(gateway, make_rows(1)))
    assert gateway_key != base.response_key(default, *_first_work(default, make_rows(1)))
    assert parts_seen[0]["identity"] == gateway.response_identity == {"base_url": "https://gateway.example:8443/v1"}
    assert FAKE_KEY not in json.dumps(parts_seen) + json.dumps(gateway.describe())


def test_anthropic_base_url_from_the_environment_is_part_of_the_key(monkeypatch):
    import anthropic

    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    keys = {}
    for url in ("http://127.0.0.1:9", "http://127.0.0.1:8", None):
        if url is None:
            monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
        else:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        backend = base.get_backend("anthropic:claude-3-haiku-20240307")
        expected = url or str(anthropic.AsyncAnthropic(api_key=FAKE_KEY).base_url).rstrip("/")
        assert backend.response_identity == {"base_url": expected}
        assert str(backend._make_client().base_url).rstrip("/") == expected  # where the requests go
        keys[url] = base.response_key(backend, *_first_work(backend, make_rows(1)))
    assert len(set(keys.values())) == 3
