"""``openai:<model>`` and ``openai-compatible:<base_url>#<model>``: the OpenAI Chat Completions API.

Any server speaking that format works (OpenAI itself, ``vllm serve``, other
gateways). Expression methods:

* ``logprobs``: one generated token (``max_tokens=1``) with ``logprobs=True,
  top_logprobs=20``; the API gives **at most 20** alternatives, so a question with
  more than 20 options is refused before any request (the capability check);
* ``sequence`` and ``verbalize``: one sampled completion at temperature 1, with the
  job's sample seed passed as ``seed`` (OpenAI treats it as best effort; vLLM
  samples reproducibly with it).

Keys come from the environment only: ``OPENAI_API_KEY`` for ``openai:`` (or the
variable named by ``api_key_env``). An ``openai-compatible:`` server gets the key
in ``api_key_env`` when that option names one, and otherwise the placeholder
``EMPTY`` (what ``vllm serve`` without ``--api-key`` expects): an OpenAI key is
never sent to another server by default. ``openai:`` follows the SDK's own
``OPENAI_BASE_URL`` if set; the URL is resolved once, when the backend is made,
and the same URL goes into the response cache key and the manifest
(``response_identity``), so answers of a gateway or proxy are never served as
OpenAI's, nor the other way round. A base URL carrying credentials or a query
is refused, in a spec or in the environment (:func:`check_base_url`).

The SDK's retries are off (``max_retries=0``): the engine (``api_engine.py``)
retries, limits and times requests. The SDK does not validate responses (even
``{}`` parses), so :meth:`OpenAIBackend._send` does: a response without the answer
is a retryable malformed response.

>>> parse_spec("openai-compatible:http://127.0.0.1:8000/v1#meta-llama/Llama-3.1-8B-Instruct")
('openai-compatible', 'http://127.0.0.1:8000/v1', 'meta-llama/Llama-3.1-8B-Instruct')
>>> parse_spec("openai:gpt-4o")
('openai', None, 'gpt-4o')
"""

from __future__ import annotations

import math
import os
import urllib.parse
from typing import Any

from distalign_data.model_runners.api_engine import ApiBackend
from distalign_data.model_runners.api_engine import TransientError
from distalign_data.model_runners.api_engine import RequestRejected
from distalign_data.model_runners.api_engine import api_key_from_env
from distalign_data.model_runners.api_engine import backend_options
from distalign_data.model_runners.api_engine import classify_sdk_error
from distalign_data.model_runners.base import Capabilities
from distalign_data.model_runners.base import sample_seed
from distalign_data.model_runners.cache import public_url

# The Chat Completions API returns at most this many alternatives per token.
MAX_TOP_LOGPROBS = 20
# Room for 30 letters with spaces or a percentage object, plus a short preamble
# from a model that does not follow the format exactly.
MAX_TOKENS = 400
TEMPERATURE = 1.0
PLACEHOLDER_KEY = "EMPTY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def check_base_url(url: str, *, where: str) -> None:
    """ValueError when a base URL carries credentials or a query.

    Such a URL would reach records, manifests and cache keys, and the HTTP
    client logs every request's URL; the SDKs would also put a query in the
    middle of each request path.

    >>> check_base_url("http://me:pw@127.0.0.1:8000/v1", where="OPENAI_BASE_URL")
    Traceback (most recent call last):
    ...
    ValueError: OPENAI_BASE_URL: the base URL must not carry credentials or a query; put the key in an environment variable and name it with api_key_env
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password or parts.query:
        raise ValueError(f"{where}: the base URL must not carry credentials or a query; "
                         "put the key in an environment variable and name it with api_key_env")


def base_url_from_env(variable: str, default: str, *, spec: str) -> str:
    """The base URL an SDK client made without one uses: the environment variable's value if set, else ``default``.

    ValueError (naming the variable, never its value) when it carries credentials or a query.

    >>> base_url_from_env("DISTALIGN_UNSET_VARIABLE", "https://api.example/v1", spec="openai:m")
    'https://api.example/v1'
    """
    url = os.environ.get(variable, "").strip() or default
    check_base_url(url, where=f"{spec}: {variable}")
    return url


def parse_spec(spec: str) -> tuple[str, str | None, str]:
    """(kind, base_url or None, model) of an ``openai:`` or ``openai-compatible:`` model spec; ValueError if malformed."""
    kind, _, rest = spec.partition(":")
    if kind == "openai":
        if not rest:
            raise ValueError(f"model spec {spec!r} names no model; expected openai:<model>")
        return kind, None, rest
    if kind != "openai-compatible":
        raise ValueError(f"model spec {spec!r} is not openai:<model> or openai-compatible:<base_url>#<model>")
    base_url, sep, model = rest.rpartition("#")
    url = urllib.parse.urlsplit(base_url)
    if not sep or not model or url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"model spec {spec!r}: expected openai-compatible:<http(s) base_url>#<model>")
    check_base_url(base_url, where=f"model spec for {url.hostname}")
    return kind, base_url, model


class OpenAIBackend(ApiBackend):
    """Chat Completions over the ``openai`` SDK's ``AsyncOpenAI``."""

    capabilities = Capabilities(logprobs=True, max_top_logprobs=MAX_TOP_LOGPROBS)

    def __init__(self, spec: str, *, api_key_env: str | None = None, **options: Any) -> None:
        self.name, base_url, model = parse_spec(spec)
        super().__init__(spec, model, **options)
        if self.name == "openai":
            self._api_key = api_key_from_env(api_key_env or "OPENAI_API_KEY", spec=spec)
            # The SDK's own choice, fixed here: requests, cache key and manifest name one server.
            base_url = base_url_from_env("OPENAI_BASE_URL", DEFAULT_BASE_URL, spec=spec)
        else:
            self._api_key = api_key_from_env(api_key_env, spec=spec) if api_key_env else PLACEHOLDER_KEY
        self.base_url = base_url
        self.response_identity = {"base_url": public_url(base_url)}
        self._secrets = (self._api_key,)

    def sampling_parameters(self, method: str) -> dict[str, Any]:
        if method == "logprobs":
            return {"temperature": TEMPERATURE, "max_tokens": 1, "logprobs": True, "top_logprobs": MAX_TOP_LOGPROBS}
        return {"temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}

    def build_request(self, job: Any, prompt: Any) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(message) for message in prompt.messages],
            **self.sampling_parameters(job.method),
            "seed": sample_seed(job.seed, prompt),
        }

    def _make_client(self) -> Any:
        import openai

        http_client = None
        if self.base_url.startswith("http://"):
            # Plain HTTP (a local vLLM server) never uses TLS: skip building a
            # certificate store (~0.1 s for every generate call).
            http_client = openai.DefaultAsyncHttpxClient(verify=False, timeout=self.settings.timeout)
        return openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0,
                                  timeout=self.settings.timeout, http_client=http_client)

    def _classify(self, error: BaseException) -> BaseException:
        import openai

        return classify_sdk_error(error, openai, spec=self.spec, secrets=self._secrets)

    async def _send(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        from openai.types.chat import ChatCompletion

        # The client's generic ``post`` (what ``chat.completions.create`` calls after
        # re-typing every parameter): the body is plain JSON already, and the
        # re-typing costs ~1 ms of CPU a request, a third of the engine's budget at
        # high concurrency (benchmarks/bench_api_runner.py).
        response = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        try:
            return _validated(response, want_logprobs=bool(body.get("logprobs")))
        except (AttributeError, TypeError, IndexError, KeyError, ValueError) as error:
            raise TransientError(f"malformed response: {type(error).__name__} while reading it") from None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "api": "chat.completions"}


def _validated(response: Any, *, want_logprobs: bool) -> dict[str, Any]:
    """``{"text", "top_logprobs", "usage"}`` read off a Chat Completions response; TransientError when a field is missing."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise TransientError("malformed response: no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    top = None
    if want_logprobs:
        positions = getattr(getattr(choice, "logprobs", None), "content", None)
        if not positions:
            raise TransientError("malformed response: no logprobs.content")
        alternatives = positions[0].top_logprobs
        if not alternatives:
            raise TransientError("malformed response: no top_logprobs")
        top = [(str(alt.token), float(alt.logprob)) for alt in alternatives]
        if not all(isinstance(alt.token, str) and not math.isnan(lp) for alt, (_t, lp) in zip(alternatives, top)):
            raise TransientError("malformed response: a top_logprobs entry lacks a token or a log-probability")
    elif not isinstance(content, str):
        refusal = getattr(message, "refusal", None)
        if isinstance(refusal, str):
            raise RequestRejected(f"the model refused: {refusal[:200]}")
        raise TransientError("malformed response: no choices[0].message.content")
    usage = getattr(response, "usage", None)
    tokens = {"input_tokens": getattr(usage, "prompt_tokens", None), "output_tokens": getattr(usage, "completion_tokens", None)}
    return {
        "text": content if isinstance(content, str) else None,
        "top_logprobs": top,
        "usage": {k: v for k, v in tokens.items() if isinstance(v, int)},
    }


def create_backend(spec: str, **options: Any) -> OpenAIBackend:
    """The backend of ``spec`` (see the module docstring); ``options`` are the API options of ``distalign run``."""
    return OpenAIBackend(spec, **backend_options(spec, options))
