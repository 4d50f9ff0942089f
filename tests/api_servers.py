"""Loopback HTTP servers speaking the OpenAI Chat Completions and Anthropic Messages formats.

They answer from a scripted model (a deterministic function of the request), count
every request (in total and per request fingerprint), and inject faults on demand,
so the API runners can be tested without a network and without a key.

A request fingerprint is the SHA-256 of the request body's canonical JSON: a retry
of one request has the same fingerprint, a different prompt or parameter does not.

Faults (``FAULTS``): ``latency`` (an extra delay, then a normal answer), ``429``
(with ``Retry-After`` and ``retry-after-ms``), ``500``, ``503``, ``timeout`` (sleep
past the client's timeout), ``malformed`` (HTTP 200, not JSON), ``truncated``
(HTTP 200, half a JSON document), ``missing_fields`` (HTTP 200, a JSON document
without the answer), ``disconnect`` (close the connection without an answer),
``echo_key`` (HTTP 400 whose body repeats the request's credentials, as a careless
proxy might), ``unauthorized`` (HTTP 401) and ``unsupported_parameter`` (HTTP 400
with that error code, as OpenAI answers a model that takes no ``max_tokens``).

>>> server = start_server("openai")
>>> import json, urllib.request
>>> body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
>>> reply = urllib.request.urlopen(urllib.request.Request(server.url + "/chat/completions", data=body))
>>> json.loads(reply.read())["choices"][0]["message"]["content"] == server.model.text(json.loads(body))
True
>>> server.request_count
1
>>> server.close()
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

FAULTS = (
    "latency",
    "429",
    "500",
    "503",
    "timeout",
    "malformed",
    "truncated",
    "missing_fields",
    "disconnect",
    "echo_key",
    "unauthorized",
    "unsupported_parameter",
)
# Faults a client should retry and eventually get past.
TRANSIENT_FAULTS = ("429", "500", "503", "timeout", "malformed", "truncated", "missing_fields", "disconnect")

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def fingerprint(body: dict[str, Any]) -> str:
    """SHA-256 of a request body's canonical JSON (a retry has the same fingerprint)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def prompt_text(body: dict[str, Any]) -> str:
    """All message text of a request (system included), in order."""
    parts = [body.get("system") or ""] if isinstance(body.get("system"), str) else []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(block.get("text", "") for block in content if isinstance(block, dict))
        parts.append(str(content))
    return "\n".join(parts)


_OPTION_LINE = re.compile(r"^([A-Z])\. ", re.MULTILINE)


@dataclass
class ScriptedModel:
    """A deterministic stand-in for a language model: answers are a function of the prompt.

    The option letters are read off the prompt's last ``Options:`` block (``default_letters``
    when there is none). A sequence answer is 30 letters drawn with a generator seeded by
    the prompt's hash; a prompt asking for percentages gets a JSON object of percentages;
    a log-prob request gets the option letters (plus one non-letter token) with
    log-probabilities derived from the same hash.
    """

    default_letters: int = 4

    def _rng(self, body: dict[str, Any]) -> random.Random:
        return random.Random(hashlib.sha256(prompt_text(body).encode()).hexdigest())

    def letters(self, body: dict[str, Any]) -> str:
        text = prompt_text(body)
        block = text[text.rfind("Options:"):] if "Options:" in text else ""
        found = "".join(_OPTION_LINE.findall(block))
        return found or LETTERS[: self.default_letters]

    def text(self, body: dict[str, Any]) -> str:
        rng = self._rng(body)
        letters = self.letters(body)
        if "percentage" in prompt_text(body):
            weights = [rng.randint(1, 9) for _ in letters]
            percents = [100 * w // sum(weights) for w in weights]
            percents[0] += 100 - sum(percents)
            return json.dumps(dict(zip(letters, percents)))
        return " ".join(rng.choice(letters) for _ in range(30))

    def top_logprobs(self, body: dict[str, Any], k: int) -> list[tuple[str, float]]:
        rng = self._rng(body)
        letters = self.letters(body)
        weights = [rng.random() + 0.05 for _ in letters]
        total = sum(weights) * 1.1  # leave mass for a token that is not a letter
        pairs = [(letter, math.log(w / total)) for letter, w in zip(letters, weights)]
        pairs.append(("Answer", math.log(0.1 / 1.1)))
        pairs.sort(key=lambda pair: -pair[1])
        return pairs[:k]


FaultPlan = Callable[[str, int], "str | None"]


def no_faults(_fingerprint: str, _attempt: int) -> str | None:
    return None


def always(fault: str) -> FaultPlan:
    """Every request gets ``fault``."""
    return lambda _fp, _attempt: fault


def first_attempts(fault: str, n: int) -> FaultPlan:
    """The first ``n`` attempts of every request get ``fault``, later ones succeed."""
    return lambda _fp, attempt: fault if attempt <= n else None


def assorted(fraction: float, *, seed: int, kinds: tuple[str, ...] = TRANSIENT_FAULTS, max_failures: int = 2,
             doomed: frozenset[str] = frozenset()) -> FaultPlan:
    """About ``fraction`` of all attempts fail, in assorted ways, deterministically.

    The decision is a hash of (seed, fingerprint, attempt), so a retry of a failed
    request may fail again, but never more than ``max_failures`` times in a row. A
    fingerprint in ``doomed`` fails on every attempt.
    """

    def plan(fp: str, attempt: int) -> str | None:
        rng = random.Random(f"{seed}:{fp}:{attempt}")
        if fp in doomed:
            return kinds[rng.randrange(len(kinds))]
        if attempt > max_failures or rng.random() >= fraction:
            return None
        return kinds[rng.randrange(len(kinds))]

    return plan


@dataclass
class Settings:
    latency_s: float = 0.0
    extra_latency_s: float = 0.3  # the ``latency`` fault
    timeout_sleep_s: float = 2.0  # the ``timeout`` fault: longer than the client's timeout
    retry_after_s: float = 0.05
    faults: FaultPlan = no_faults


@dataclass
class Event:
    fingerprint: str
    attempt: int
    fault: str | None
    status: int | None
    response_id: str | None
    received_at: float
    answered_at: float | None = None


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, flavour: str, model: ScriptedModel, settings: Settings) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.flavour = flavour
        self.model = model
        self.settings = settings
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.events: list[Event] = []
        self.headers_seen: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL a client is given (OpenAI clients expect the ``/v1`` prefix in it)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" + ("/v1" if self.flavour == "openai" else "")

    @property
    def request_count(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def answered(self) -> dict[str, str]:
        """response id -> fingerprint of every successful answer sent."""
        with self.lock:
            return {e.response_id: e.fingerprint for e in self.events if e.response_id is not None}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.events.clear()
            self.headers_seen.clear()
            self.max_in_flight = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a timeout, a killed run) is part of the tests, not an error to print."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def start(self) -> "LoopbackServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def start_server(flavour: str, *, model: ScriptedModel | None = None, **settings: Any) -> LoopbackServer:
    """Start a server (``flavour`` ``"openai"`` or ``"anthropic"``) on 127.0.0.1 in a daemon thread."""
    if flavour not in ("openai", "anthropic"):
        raise ValueError(f"flavour {flavour!r} is not 'openai' or 'anthropic'")
    return LoopbackServer(flavour, model or ScriptedModel(), Settings(**settings)).start()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: with Nagle's algorithm a separate body
    # write waits for the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: LoopbackServer

    def log_message(self, *_args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        server = self.server
        received = time.monotonic()
        body_bytes = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(body_bytes)
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        fp = fingerprint(body)
        with server.lock:
            server.counts[fp] += 1
            attempt = server.counts[fp]
            server.headers_seen.append(dict(self.headers))
        fault = server.settings.faults(fp, attempt)
        event = Event(fp, attempt, fault, None, None, received)
        with server.lock:
            server.events.append(event)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            delay = server.settings.latency_s + (server.settings.extra_latency_s if fault == "latency" else 0.0)
            if delay:
                time.sleep(delay)
            event.status = self._answer(body, fault, event)
        except (BrokenPipeError, ConnectionResetError):
            event.status = None
        finally:
            event.answered_at = time.monotonic()
            with server.lock:
                server.in_flight -= 1

    def _answer(self, body: dict[str, Any], fault: str | None, event: Event) -> int | None:
        server = self.server
        if fault == "timeout":
            time.sleep(server.settings.timeout_sleep_s)
            self.close_connection = True
            return None
        if fault == "disconnect":
            self.close_connection = True
            return None
        if fault == "429":
            retry = server.settings.retry_after_s
            headers = {"Retry-After": str(max(1, round(retry))), "retry-after-ms": str(int(retry * 1000))}
            return self._send(429, self._error("rate_limit_error", "slow down"), headers)
        if fault in ("500", "503"):
            return self._send(int(fault), self._error("api_error", "server trouble"))
        if fault == "unauthorized":
            return self._send(401, self._error("authentication_error", "invalid key"))
        if fault == "unsupported_parameter":
            error = self._error("invalid_request_error", "Unsupported parameter: 'max_tokens'")
            error["error"]["code"] = "unsupported_parameter"
            return self._send(400, error)
        if fault == "echo_key":
            echoed = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "x-api-key")}
            return self._send(400, self._error("invalid_request_error", f"bad request with headers {echoed}"))
        if fault == "malformed":
            return self._send_raw(200, b"<html>upstream gateway says hello</html>")
        if fault == "missing_fields":
            return self._send(200, {"id": "x", "object": "chat.completion"} if server.flavour == "openai" else {"id": "x", "type": "message"})
        response_id = f"resp-{event.fingerprint[:12]}-{event.attempt}"
        payload = self._openai(body, response_id) if server.flavour == "openai" else self._anthropic(body, response_id)
        if fault == "truncated":
            data = json.dumps(payload).encode()
            return self._send_raw(200, data[: len(data) // 2])
        status = self._send(200, payload)
        event.response_id = response_id
        return status

    def _error(self, kind: str, message: str) -> dict[str, Any]:
        if self.server.flavour == "anthropic":
            return {"type": "error", "error": {"type": kind, "message": message}}
        return {"error": {"type": kind, "message": message, "code": None}}

    def _openai(self, body: dict[str, Any], response_id: str) -> dict[str, Any]:
        model = self.server.model
        usage_in = len(prompt_text(body)) // 4
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0)
            top = model.top_logprobs(body, max(k, 1))
            choice["message"] = {"role": "assistant", "content": top[0][0]}
            choice["logprobs"] = {"content": [{
                "token": top[0][0], "logprob": top[0][1], "bytes": list(top[0][0].encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top[:k]],
            }]}
            usage_out = 1
        else:
            text = model.text(body)
            choice["message"] = {"role": "assistant", "content": text}
            usage_out = len(text) // 2
        return {
            "id": response_id, "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [choice],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out, "total_tokens": usage_in + usage_out},
        }

    def _anthropic(self, body: dict[str, Any], response_id: str) -> dict[str, Any]:
        text = self.server.model.text(body)
        return {
            "id": response_id, "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": len(prompt_text(body)) // 4, "output_tokens": len(text) // 2},
        }

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> int:
        return self._send_raw(status, json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        return status


def serve_in_subprocess(flavour: str, **settings: Any):  # pragma: no cover - used by the benchmark
    """Run a server in a child process (no GIL shared with the client); returns (process, url, connection).

    Sending anything on the connection stops the server.
    """
    import multiprocessing

    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_child_main, args=(flavour, settings, child), daemon=True)
    process.start()
    url = parent.recv()
    return process, url, parent


def _child_main(flavour: str, settings: dict[str, Any], conn: Any) -> None:  # pragma: no cover
    server = start_server(flavour, **settings)
    conn.send(server.url)
    conn.recv()  # any message (or the parent's exit) stops the server
    conn.send(server.request_count)
    server.close()
