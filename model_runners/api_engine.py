"""The shared engine of the HTTP API backends: concurrency, rate limits, retries, guards, usage and cost.

An :class:`ApiBackend` subclass (``openai_api.py``, ``anthropic_api.py``) says how
one request is built, sent and validated; this module does everything else:

* at most ``concurrency`` requests in flight (asyncio), optional requests-per-minute
  (``rpm``) and tokens-per-minute (``tpm``) limits (token buckets holding one
  second's worth, so a burst at start-up exceeds a limit by at most that);
* retries of transient failures (HTTP 429, 408, 409, 5xx, timeouts, dropped
  connections, responses that are not valid JSON or lack the answer) with
  exponential back-off and jitter seeded by (``seed``, request, attempt), honouring
  ``Retry-After`` / ``retry-after-ms`` (up to 5 minutes; a 429 pauses every
  request, as rate limits are per account), at most ``max_attempts`` attempts, each cut off after
  ``timeout`` seconds. A request that fails every attempt, or that the server
  rejects (another 4xx), becomes ``RawOutput(error=...)``: recorded as failed,
  never dropped, never retried forever. HTTP 401/403/404 (bad key, no access, no
  such model) and a 400 whose error code says the model does not support a
  parameter stop the run with :class:`ApiConfigurationError` instead, since every
  request would fail the same way (nothing is recorded for them);
* outputs are handed to ``on_output`` on one writer thread, in the order they
  arrive, so the driver's cache and record writes (``base.run``: the response is
  cached before its record is written) never stall the requests in flight. The
  response cache and the sharing of identical prompts live in the driver;
* the ``max_requests`` and ``budget`` guards. Every HTTP attempt counts as a
  request. A request is sent only if the cost spent, plus the worst case of the
  requests in flight, plus its own worst case (a bound on its prompt's tokens and
  its ``max_tokens``), stays within the budget; it waits for requests in flight
  to settle when they are what stands in the way. When a guard is reached, no
  further request is sent, requests in flight finish and are recorded, and
  ``generate`` raises :class:`RunLimitReached` saying how many jobs were not run.
  Those jobs get no record, so running again with a higher limit resumes them.
  Both guards count what this backend object sent (one ``distalign run``
  invocation), not what earlier invocations on the same run directory spent;
* usage: each output's ``usage`` holds ``input_tokens``, ``output_tokens`` and,
  when the model has a price (:data:`PRICES_USD_PER_MTOK`, or the ``prices``
  option), ``estimated_cost_usd``, which the driver sums into the manifest. A model
  without a price has no cost entry (unknown), never a guess. :meth:`ApiBackend.describe`
  adds the requests sent, retries, failures and the price used to the manifest.

Keys come from the environment only (:func:`api_key_from_env`) and never reach the
cache, records, manifests, logs or exception messages: every error text from an
SDK or a server goes through :func:`scrub` first.

>>> scrub("Error 400: {'Authorization': 'Bearer sk-abc123456789'}", secrets=("sk-abc123456789",))
"Error 400: {'Authorization': 'Bearer [redacted]'}"
>>> backoff_delay(3, base=0.5, cap=30.0, rng=random.Random(0)) # 0.5 * 2**2 with jitter in [0.5, 1]
1.8444218515250481
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import queue
import random
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from distalign_data.errors import DistalignError

logger = logging.getLogger("distalign_data.model_runners.api")

# List prices in USD per million (input, output) tokens as the providers published
# them in 2025 (check before relying on them; override with the ``prices`` option).
PRICES_USD_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo-0125": (0.50, 1.50),
    "claude-3-haiku-20240307": (0.25, 1.25),
    "claude-3-opus-20240229": (15.00, 75.00),
    "claude-3-5-haiku-20241022": (0.80, 4.00),
    "claude-sonnet-4-20250514": (3.00, 15.00),
    "claude-opus-4-20250514": (15.00, 75.00),
}

# Status codes worth another attempt (the providers' own SDKs retry the same ones;
# 529 is Anthropic's "overloaded").
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# Status codes that mean every request of the run would fail the same way.
CONFIGURATION_STATUS = frozenset({401, 403, 404})
# Error codes (OpenAI's ``error.code``) of a 400 that every request of the run
# would get too: a model that takes no ``max_tokens``, ``temperature`` or ``logprobs``.
CONFIGURATION_CODES = frozenset({"unsupported_parameter", "unsupported_value", "model_not_found", "invalid_api_key"})
# A prompt is at most this many tokens per character (a conservative estimate for
# the budget guard and the tokens-per-minute limiter; real tokenisers give ~0.25).
TOKENS_PER_CHAR_BOUND = 0.5
# A Retry-After beyond this is taken as this: a broken header must not stall a run for hours.
MAX_RETRY_AFTER_S = 300.0

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",}]+"),
    re.compile(r"(?i)((?:x-api-key|api[_-]?key|authorization)['\"]?\s*[:=]\s*['\"]?)(?!bearer\b)[^\s'\",}]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{6,}"),
)


class ApiConfigurationError(DistalignError, RuntimeError):
    """The API refused the run as configured (bad key, no access, unknown model): nothing was recorded for it."""


class RunLimitReached(DistalignError, RuntimeError):
    """``max_requests`` or ``budget`` stopped the run; the jobs not run have no record and resume on the next run."""


class TransientError(Exception):
    """A failure worth another attempt (rate limit, server error, timeout, malformed response)."""

    def __init__(self, message: str, *, retry_after: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class RequestRejected(Exception):
    """The server refused this one request for good (e.g. HTTP 400): recorded as failed, not retried."""


def scrub(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and anything shaped like a credential replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + "[redacted]", text)
    return text


def api_key_from_env(variable: str, *, spec: str) -> str:
    """The API key in environment variable ``variable``; ValueError (naming the variable, never a value) if unset."""
    value = os.environ.get(variable, "")
    if not value.strip():
        raise ValueError(f"{spec}: set the environment variable {variable} to the API key (keys are read from the environment only)")
    return value.strip()


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential back-off before retry number ``attempt`` (1-based), with jitter in [half, full]."""
    return min(cap, base * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), or None."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            import email.utils

            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        if math.isfinite(seconds):
            return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    return None


def classify_sdk_error(error: BaseException, sdk: Any, *, spec: str, secrets: Iterable[str] = ()) -> BaseException:
    """Map an exception of the ``openai`` or ``anthropic`` SDK (same hierarchy) to the engine's kinds.

    Messages are built here from the status code and the server's message, scrubbed,
    so neither an SDK's text nor a server echoing the request can carry a key out.
    Anything not recognised is returned unchanged (a bug to surface, not to retry).
    """
    if isinstance(error, sdk.APITimeoutError):
        return TransientError("the request timed out")
    if isinstance(error, sdk.APIConnectionError):
        return TransientError("connection error (no complete HTTP response)")
    if isinstance(error, sdk.APIResponseValidationError) or isinstance(error, ValueError):
        # json.JSONDecodeError and pydantic's ValidationError are ValueErrors.
        return TransientError("malformed response: the body is not the JSON the API defines")
    if isinstance(error, sdk.APIStatusError):
        status = error.status_code
        body = error.body  # openai: the inner "error" object; anthropic: the whole body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]
        detail = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        text = f"HTTP {status}" + (f": {scrub(str(detail), secrets=secrets)[:300]}" if detail else "")
        if status in CONFIGURATION_STATUS or (isinstance(code, str) and code in CONFIGURATION_CODES):
            return ApiConfigurationError(f"{spec}: the API refused the run ({text}); check the model name and the key")
        if status in RETRYABLE_STATUS:
            headers = getattr(error.response, "headers", None)
            return TransientError(text, retry_after=retry_after_seconds(headers), rate_limited=status == 429)
        return RequestRejected(text)
    return error


# The options an API backend takes (``distalign run`` passes the ones given).
API_OPTIONS = frozenset({"concurrency", "rpm", "tpm", "max_attempts", "timeout", "max_requests", "budget",
                         "api_key_env", "prices", "seed", "backoff_base", "backoff_cap"})


def backend_options(spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without the ``None`` values; ValueError naming any option an API backend does not take."""
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(given) - API_OPTIONS)
    if unknown:
        raise ValueError(f"{spec}: option(s) {', '.join(unknown)} do not apply to API models; they take {', '.join(sorted(API_OPTIONS))}")
    return given


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """How the engine sends requests; every option of ``get_backend`` for an API backend lands here."""

    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    max_attempts: int = 5
    timeout: float = 60.0
    max_requests: int | None = None
    budget: float | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        positive = {"concurrency": self.concurrency, "max_attempts": self.max_attempts, "timeout": self.timeout,
                    "backoff_cap": self.backoff_cap}
        optional = {"rpm": self.rpm, "tpm": self.tpm, "max_requests": self.max_requests, "budget": self.budget}
        for name, value in {**positive, **optional}.items():
            if value is not None and not value > 0:
                raise ValueError(f"option {name} must be positive, got {value!r}")
        if self.backoff_base < 0:
            raise ValueError(f"option backoff_base must be >= 0, got {self.backoff_base!r}")


class RateLimiter:
    """A token bucket: ``per_minute`` units a minute, holding at most ``burst`` (default: one second's worth).

    A request larger than the bucket waits until the bucket is full and then
    drives it negative, so an oversized request is delayed, never refused.
    """

    def __init__(self, per_minute: float, *, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:  # first come, first served
            self._refill()
            needed = min(amount, self.capacity)
            while self.level < needed:
                await asyncio.sleep((needed - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def settle(self, difference: float) -> None:
        """Charge (or refund) the difference between the actual and the estimated amount."""
        self._refill()
        self.level = min(self.capacity, self.level - difference)


def load_prices(prices: Mapping[str, Sequence[float]] | str | os.PathLike | None) -> dict[str, tuple[float, float]]:
    """The price table: the built-in list updated by ``prices`` (a mapping or a JSON file of model -> [input, output] USD per million tokens)."""
    table = dict(PRICES_USD_PER_MTOK)
    if prices is None:
        return table
    if not isinstance(prices, Mapping):
        try:
            prices = json.loads(Path(prices).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"prices file {str(prices)!r} is not a readable JSON file: {error}") from None
        if not isinstance(prices, Mapping):
            raise ValueError(f"prices file: expected a JSON object of model -> [input, output], got {type(prices).__name__}")
    for model, pair in prices.items():
        if len(pair) != 2 or not all(isinstance(x, (int, float)) and x >= 0 for x in pair):
            raise ValueError(f"prices[{model!r}] must be [input, output] USD per million tokens, got {pair!r}")
        table[model] = (float(pair[0]), float(pair[1]))
    return table


@dataclasses.dataclass
class _Request:
    """One request: its job and prompt, the wire body, and worst-case token counts for the limiters and guards."""

    job: Any
    prompt: Any
    body: dict[str, Any]
    label: str  # distinguishes requests in the jitter seed
    estimated_input_tokens: int
    max_output_tokens: int


class _Stop(Exception):
    """A guard stopped the run before this request was answered."""


class ApiBackend:
    """The :class:`~distalign_data.model_runners.base.Backend` of an HTTP API; subclasses say how one request goes.

    Subclasses set ``name`` and ``capabilities`` and ``_secrets`` (the key, so that
    it is scrubbed from any text), and implement :meth:`sampling_parameters`,
    :meth:`build_request`, :meth:`_make_client`, :meth:`_send` and :meth:`_classify`.
    """

    name: str
    capabilities: Any

    def __init__(self, spec: str, model: str, *, concurrency: int = 8, rpm: float | None = None,
                 tpm: float | None = None, max_attempts: int = 5, timeout: float = 60.0,
                 max_requests: int | None = None, budget: float | None = None,
                 prices: Mapping[str, Sequence[float]] | str | None = None, seed: int = 0,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        if not model:
            raise ValueError(f"model spec {spec!r} names no model")
        self.spec = spec
        self.model = model
        self.settings = EngineSettings(concurrency=int(concurrency), rpm=rpm, tpm=tpm, max_attempts=int(max_attempts),
                                       timeout=float(timeout), max_requests=max_requests, budget=budget,
                                       backoff_base=backoff_base, backoff_cap=backoff_cap, seed=int(seed))
        self.price = load_prices(prices).get(model)
        if budget is not None and self.price is None:
            raise ValueError(f"{spec}: a budget needs the price of model {model!r}, which is not in the price table; "
                             "give its price: prices={model: [input, output]} in USD per million tokens "
                             "(distalign run --prices FILE, a JSON file of that mapping)")
        self._secrets: tuple[str, ...] = ()
        self._totals = {"requests_sent": 0, "retries": 0, "failed_requests": 0, "responses_without_usage": 0}
        self._cost = 0.0
        self._stop_reason = ""

    # -- what subclasses provide -------------------------------------------------

    def sampling_parameters(self, method: str) -> dict[str, Any]:
        raise NotImplementedError

    def build_request(self, job: Any, prompt: Any) -> dict[str, Any]:
        """The request body as sent: model, messages, sampling parameters (and seed where the API takes one)."""
        raise NotImplementedError

    def _make_client(self) -> Any:
        """A new SDK client (made inside the event loop that uses it), with the SDK's own retries off."""
        raise NotImplementedError

    async def _send(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Send one request; return the validated ``{"text", "top_logprobs", "usage"}`` or raise."""
        raise NotImplementedError

    def _classify(self, error: BaseException) -> BaseException:
        """Map an SDK exception to TransientError / RequestRejected / ApiConfigurationError (see :func:`classify_sdk_error`)."""
        raise NotImplementedError

    # -- the engine ----------------------------------------------------------------

    def _request(self, job: Any, prompt: Any) -> _Request:
        body = self.build_request(job, prompt)
        chars = sum(len(str(m.get("content", ""))) for m in prompt.messages)
        max_out = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        label = f"{job.key}:{prompt.sha256}"
        return _Request(job, prompt, body, label, math.ceil(chars * TOKENS_PER_CHAR_BOUND), max_out)

    def _request_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        if self.price is None:
            return None
        return (input_tokens * self.price[0] + output_tokens * self.price[1]) / 1e6

    def generate(self, work: Sequence[tuple[Any, Any]], on_output: Callable[[Any, Any, Any], None]) -> None:
        """Answer every (job, prompt): ``on_output(job, prompt, raw)`` once per job, from one thread, as answers arrive.

        Raises ValueError before any request when a job needs a capability the
        backend lacks, :class:`ApiConfigurationError` when the API refuses the
        run as configured, and :class:`RunLimitReached` (after every answered job
        has been handed over) when ``max_requests`` or ``budget`` stopped it.
        """
        from distalign_data.model_runners.base import check_capabilities

        work = list(work)
        check_capabilities(self, [job for job, _prompt in work])
        requests = [self._request(job, prompt) for job, prompt in work]
        if not requests:
            return
        writer = _Writer(on_output)
        try:
            not_run = _run_coroutine(lambda: self._run(requests, writer))
        finally:
            writer.close()
        if not_run:
            raise RunLimitReached(
                f"{self.spec}: {self._stop_reason}; {len(not_run)} of {len(requests)} requests were not sent and "
                "their jobs have no record. Run again with a higher limit to resume them."
            )

    async def _run(self, requests: list[_Request], writer: "_Writer") -> list[_Request]:
        from distalign_data.model_runners.base import RawOutput

        settings = self.settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._rpm = RateLimiter(settings.rpm) if settings.rpm else None
        self._tpm = RateLimiter(settings.tpm) if settings.tpm else None
        self._pause_until = 0.0
        self._reserved = 0.0
        self._settled = asyncio.Condition()
        self._stop_reason = ""
        todo = iter(requests)
        not_run: list[_Request] = []
        client = self._make_client()

        async def worker() -> None:
            for request in todo:
                try:
                    outcome = await self._with_retries(client, request)
                except _Stop:
                    not_run.append(request)
                    continue
                if isinstance(outcome, str):
                    self._totals["failed_requests"] += 1
                    raw = RawOutput(error=outcome)
                else:
                    raw = RawOutput(text=outcome["text"], top_logprobs=outcome["top_logprobs"],
                                    usage=outcome["usage"], elapsed_s=outcome["elapsed_s"])
                writer.submit(request.job, request.prompt, raw)
                writer.raise_if_failed()

        # Back-off sleeps hold a worker but not a slot, so twice as many workers as
        # slots keep the slots busy while some requests wait to retry.
        workers = [asyncio.create_task(worker()) for _ in range(min(len(requests), 2 * settings.concurrency))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            await client.close()
        return not_run

    def _guard(self) -> None:
        settings = self.settings
        if self._stop_reason:
            raise _Stop
        if settings.max_requests is not None and self._totals["requests_sent"] >= settings.max_requests:
            self._stop_reason = f"max_requests={settings.max_requests} reached"
            raise _Stop

    async def _admit(self, worst: float) -> None:
        """Raise _Stop when a guard forbids sending; wait while only the requests in flight might."""
        self._guard()
        budget = self.settings.budget
        if budget is None:
            return
        while self._cost + self._reserved + worst > budget:
            if self._cost + worst > budget:
                self._stop_reason = (f"budget={budget} USD reached (spent {self._cost:.4f} USD; the next request "
                                     f"could cost up to {worst:.4f} USD)")
                raise _Stop
            async with self._settled:
                await self._settled.wait()
            self._guard()

    async def _with_retries(self, client: Any, request: _Request) -> dict[str, Any] | str:
        """The validated response, or the reason the request failed for good; raises _Stop when a guard stops it."""
        settings = self.settings
        last_error = ""
        estimated_tokens = request.estimated_input_tokens + request.max_output_tokens
        worst = self._request_cost(request.estimated_input_tokens, request.max_output_tokens) or 0.0
        for attempt in range(1, settings.max_attempts + 1):
            while (wait := self._pause_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self._guard()
            if self._rpm is not None:
                await self._rpm.acquire(1)
            if self._tpm is not None:
                await self._tpm.acquire(estimated_tokens)
            async with self._slots:
                await self._admit(worst)  # the guards may have changed while this request waited
                self._totals["requests_sent"] += 1
                self._totals["retries"] += attempt > 1
                self._reserved += worst
                started = time.monotonic()
                try:
                    response = await asyncio.wait_for(self._send(client, request.body), settings.timeout)
                    failure = None
                except asyncio.CancelledError:
                    raise
                except asyncio.TimeoutError:
                    failure = TransientError(f"no answer within {settings.timeout} s")
                except Exception as error:  # noqa: BLE001 - classified; anything unknown is re-raised below
                    failure = self._classify(error)
                finally:
                    self._reserved -= worst
                if isinstance(failure, ApiConfigurationError):
                    # Stop the requests waiting for this slot before releasing it.
                    self._stop_reason = "the API refused the run"
                if failure is None:
                    response["elapsed_s"] = round(time.monotonic() - started, 6)
                    self._account(response, estimated_tokens)
                async with self._settled:
                    self._settled.notify_all()
            if failure is None:
                return response
            if isinstance(failure, ApiConfigurationError):
                raise failure from None
            if isinstance(failure, RequestRejected):
                logger.warning("%s: request rejected for good: %s", self.spec, failure)
                return f"request rejected: {failure}"
            if not isinstance(failure, TransientError):
                raise failure
            last_error = str(failure)
            if attempt == settings.max_attempts:
                break
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                rng = random.Random(f"{settings.seed}:{request.label}:{attempt}")
                delay = backoff_delay(attempt, base=settings.backoff_base, cap=settings.backoff_cap, rng=rng)
            if failure.rate_limited:
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
            logger.info("%s: attempt %d of %d failed (%s); retrying in %.2f s", self.spec, attempt,
                        settings.max_attempts, last_error, delay)
            await asyncio.sleep(delay)
        logger.warning("%s: request failed after %d attempts: %s", self.spec, settings.max_attempts, last_error)
        return f"failed after {settings.max_attempts} attempts; last error: {last_error}"

    def _account(self, response: dict[str, Any], estimated_tokens: int) -> None:
        usage = response["usage"]
        input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
        if not (isinstance(input_tokens, int) and isinstance(output_tokens, int)):
            self._totals["responses_without_usage"] += 1
            return
        cost = self._request_cost(input_tokens, output_tokens)
        if cost is not None:
            usage["estimated_cost_usd"] = round(cost, 8)
            self._cost += cost
        if self._tpm is not None:
            self._tpm.settle(input_tokens + output_tokens - estimated_tokens)

    def describe(self) -> dict[str, Any]:
        """Facts for the run manifest: what this backend object has sent, and the price it used (no secret)."""
        return {
            "api_requests": dict(self._totals),
            "price_usd_per_mtok": list(self.price) if self.price is not None else None,
            "cost": "estimated from the price table" if self.price is not None else f"unknown: no price for model {self.model!r}",
            "engine": dataclasses.asdict(self.settings),
            "stopped": self._stop_reason or None,
        }

    def close(self) -> None:
        """Nothing to release: each ``generate`` opens and closes its own client."""


class _Writer:
    """Hands outputs to ``on_output`` on one thread, so disk writes never stall the event loop."""

    def __init__(self, on_output: Callable[[Any, Any, Any], None]) -> None:
        self.on_output = on_output
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="distalign-api-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Any, prompt: Any, raw: Any) -> None:
        self._queue.put((job, prompt, raw))

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while (entry := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self.on_output(*entry)
                except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread
                    self.error = error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.raise_if_failed()


def _run_coroutine(factory: Callable[[], Any]) -> Any:
    """Run ``factory()`` to completion, also when the caller already runs an event loop (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
