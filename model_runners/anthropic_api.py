"""``anthropic:<model>``: the Anthropic Messages API.

Expression methods ``sequence`` and ``verbalize`` (one sampled completion at
temperature 1). The Messages API returns no log-probabilities, so the backend
reports ``Capabilities(logprobs=False)`` and a run asking for ``logprobs`` is
refused before any request (``base.check_capabilities``).

The key comes from ``ANTHROPIC_API_KEY`` (or the variable named by
``api_key_env``); the SDK's own ``ANTHROPIC_BASE_URL`` is honoured, resolved once
when the backend is made, and part of the response cache key and the manifest
(``response_identity``); one carrying credentials or a query is refused. In anthropic
2.x ``messages.create`` has no ``temperature`` argument, so it travels in
``extra_body``; the system message goes in ``system``. The SDK's retries are off:
the engine (``api_engine.py``) retries, limits and times requests, and
:func:`_validated` checks each response (the SDK accepts an empty one).
"""

from __future__ import annotations

from typing import Any

from distalign_data.model_runners.api_engine import ApiBackend
from distalign_data.model_runners.api_engine import TransientError
from distalign_data.model_runners.api_engine import api_key_from_env
from distalign_data.model_runners.api_engine import backend_options
from distalign_data.model_runners.api_engine import classify_sdk_error
from distalign_data.model_runners.base import Capabilities
from distalign_data.model_runners.cache import public_url
from distalign_data.model_runners.openai_api import MAX_TOKENS
from distalign_data.model_runners.openai_api import TEMPERATURE
from distalign_data.model_runners.openai_api import base_url_from_env

DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicBackend(ApiBackend):
    """Messages over the ``anthropic`` SDK's ``AsyncAnthropic``."""

    name = "anthropic"
    capabilities = Capabilities(logprobs=False, max_top_logprobs=None)

    def __init__(self, spec: str, *, api_key_env: str | None = None, **options: Any) -> None:
        prefix, _, model = spec.partition(":")
        if prefix != "anthropic" or not model:
            raise ValueError(f"model spec {spec!r} is not anthropic:<model>")
        super().__init__(spec, model, **options)
        self._api_key = api_key_from_env(api_key_env or "ANTHROPIC_API_KEY", spec=spec)
        # The SDK's own choice, fixed here: requests, cache key and manifest name one server.
        self.base_url = base_url_from_env("ANTHROPIC_BASE_URL", DEFAULT_BASE_URL, spec=spec)
        self.response_identity = {"base_url": public_url(self.base_url)}
        self._secrets = (self._api_key,)

    def sampling_parameters(self, method: str) -> dict[str, Any]:
        return {"temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}

    def build_request(self, job: Any, prompt: Any) -> dict[str, Any]:
        system = [m["content"] for m in prompt.messages if m["role"] == "system"]
        body = {
            "model": self.model,
            "messages": [dict(m) for m in prompt.messages if m["role"] != "system"],
            **self.sampling_parameters(job.method),
        }
        if system:
            body["system"] = "\n\n".join(system)
        return body

    def _make_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.settings.timeout)

    def _classify(self, error: BaseException) -> BaseException:
        import anthropic

        return classify_sdk_error(error, anthropic, spec=self.spec, secrets=self._secrets)

    async def _send(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        arguments = dict(body)
        temperature = arguments.pop("temperature")
        response = await client.messages.create(**arguments, extra_body={"temperature": temperature})
        try:
            return _validated(response)
        except (AttributeError, TypeError, KeyError, ValueError) as error:
            raise TransientError(f"malformed response: {type(error).__name__} while reading it") from None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "api": "messages"}


def _validated(response: Any) -> dict[str, Any]:
    """``{"text", "top_logprobs", "usage"}`` read off a Messages response; TransientError when the answer is missing."""
    blocks = getattr(response, "content", None)
    if not isinstance(blocks, list):
        raise TransientError("malformed response: no content")
    texts = [block.text for block in blocks if getattr(block, "type", None) == "text"]
    if not texts or not all(isinstance(text, str) for text in texts):
        raise TransientError("malformed response: no text block in content")
    usage = getattr(response, "usage", None)
    tokens = {"input_tokens": getattr(usage, "input_tokens", None), "output_tokens": getattr(usage, "output_tokens", None)}
    return {"text": "".join(texts), "top_logprobs": None, "usage": {k: v for k, v in tokens.items() if isinstance(v, int)}}


def create_backend(spec: str, **options: Any) -> AnthropicBackend:
    """The backend of ``spec``; ``options`` are the API options of ``distalign run``."""
    return AnthropicBackend(spec, **backend_options(spec, options))
