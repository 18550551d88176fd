"""Anthropic's Messages API as a Backend, through the official ``anthropic`` SDK (extra ``anthropic``).

Like the OpenAI-compatible backend, each sample request is ONE attempt (``max_retries=0``) and
every failure becomes a typed error of ``collabrl.backends.errors`` (529 overloaded ->
TransientError; a too-low credit balance -> QuotaExceededError); retries, limits, deadlines and
caching are wrappers. The key is read at call time from ``api_key_env`` (``"EMPTY"`` for a local
``base_url`` when unset) and never appears in messages.

What differs from the OpenAI format, and how it is handled:
- system messages go to the ``system`` parameter (joined by blank lines, in order);
- the API has no ``n``: the ``n`` samples are parallel requests; it has no ``seed`` either, so
  ``params.seed`` is not sent;
- temperature is clamped to Anthropic's range [0, 1] (GenerationParams allows up to 2);
  ``top_p`` is sent only when below 1, since recent models reject temperature and top_p
  together. Both travel in the request body (this SDK version has no keyword for them);
- ``stop`` becomes ``stop_sequences``; stop reasons map end_turn/stop_sequence -> stop,
  max_tokens -> length, refusal -> refusal, anything else (pause_turn, tool_use, null) ->
  incomplete.
Streaming (``stream``): the same request with ``stream=True``; text deltas are yielded as they
arrive, and a stream that ends without a stop reason raises IncompleteOutputError.
Usage: each completion carries its own request's input tokens (cache reads and writes included)
and output tokens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import Any

import httpx2

from collabrl.backends.errors import (
    AttemptTimeoutError,
    BackendError,
    IncompleteOutputError,
    QuotaExceededError,
    TransientError,
)
from collabrl.backends.http_api import (
    backend_error,
    gather_or_cancel,
    public_url,
    resolve_api_key,
)
from collabrl.config import AnthropicBackendConfig
from collabrl.types import Completion, FinishReason, GenerationParams, Message, Usage

ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_TEMPERATURE = 1.0

# Set on the client at construction; the real key replaces it before every request.
_KEY_NOT_READ_YET = "collabrl-reads-the-key-at-call-time"

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "refusal",
}


def _import_anthropic() -> ModuleType:
    try:
        import anthropic
    except ImportError as missing:
        raise ImportError(
            "the Anthropic backend needs the anthropic SDK: pip install 'collabrl[anthropic]'"
        ) from missing
    return anthropic


class AnthropicBackend:
    """A Backend for Anthropic's Messages API."""

    def __init__(self, config: AnthropicBackendConfig) -> None:
        self.config = config
        self._sdk = _import_anthropic()
        self._base_url = public_url(config.base_url or ANTHROPIC_DEFAULT_BASE_URL)
        self._where = f"model {config.model!r} at {self._base_url}"
        self._client = self._sdk.AsyncAnthropic(
            api_key=_KEY_NOT_READ_YET,
            base_url=config.base_url or ANTHROPIC_DEFAULT_BASE_URL,
            max_retries=0,
            timeout=config.retry.attempt_timeout_s,
        )

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        request = self._request_body(messages, params)
        return await gather_or_cancel(self._sample(request) for _ in range(params.n))

    def _request_body(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> dict[str, Any]:
        sampling: dict[str, Any] = {"temperature": min(params.temperature, MAX_TEMPERATURE)}
        if params.top_p < 1.0:
            sampling["top_p"] = params.top_p
        request: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": params.max_tokens,
            "messages": [m.to_openai() for m in messages if m.role != "system"],
            "extra_body": sampling,
        }
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        if system:
            request["system"] = system
        if params.stop:
            request["stop_sequences"] = list(params.stop)
        return request

    async def _sample(self, request: dict[str, Any]) -> Completion:
        self._client.api_key = resolve_api_key(
            self.config.api_key_env, self.config.base_url, self._where
        )
        try:
            response = await asyncio.wait_for(
                self._client.messages.create(**request), self.config.retry.attempt_timeout_s
            )
        except (self._sdk.APIError, asyncio.TimeoutError, json.JSONDecodeError) as error:
            raise self._error(error) from None
        return self._completion(response)

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """One sample's text deltas as the API sends them."""
        self._client.api_key = resolve_api_key(
            self.config.api_key_env, self.config.base_url, self._where
        )
        stop_reason = None
        try:
            events = await self._client.messages.create(
                **self._request_body(messages, params), stream=True
            )
            async with events:
                async for event in events:
                    delta = getattr(event, "delta", None)
                    if getattr(delta, "type", "") == "text_delta" and delta.text:
                        yield delta.text
                    if event.type == "message_delta":
                        stop_reason = getattr(delta, "stop_reason", None)
        except (self._sdk.APIError, asyncio.TimeoutError, json.JSONDecodeError) as error:
            raise self._error(error) from None
        except httpx2.TimeoutException:
            raise AttemptTimeoutError(
                f"no data within the attempt timeout from {self._where}"
            ) from None
        except httpx2.TransportError as error:
            raise TransientError(f"the stream from {self._where} broke: {error!r}") from None
        if stop_reason is None:
            raise IncompleteOutputError(f"the stream from {self._where} ended before the reply did")

    def _error(self, error: BaseException) -> BackendError:
        translated = backend_error(error, self._sdk, self._where)
        if translated.status in (400, 402) and "credit balance" in str(translated).lower():
            return QuotaExceededError(str(translated), status=translated.status)
        return translated

    def _completion(self, response: Any) -> Completion:
        content = getattr(response, "content", None)
        if not isinstance(content, list):
            raise TransientError(f"invalid response from {self._where}: no content")
        text = "".join(getattr(b, "text", "") for b in content if getattr(b, "type", "") == "text")
        usage = getattr(response, "usage", None)
        prompt_tokens = sum(
            getattr(usage, name, 0) or 0
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return Completion(
            text=text,
            finish_reason=_STOP_REASONS.get(
                getattr(response, "stop_reason", None) or "", "incomplete"
            ),
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=getattr(usage, "output_tokens", 0) or 0,
            ),
        )

    def identity(self) -> dict[str, str]:
        return {"kind": "anthropic", "model": self.config.model, "base_url": self._base_url}

    async def aclose(self) -> None:
        await self._client.close()

    def __repr__(self) -> str:
        return (
            f"AnthropicBackend(model={self.config.model!r}, base_url={self._base_url!r}, "
            f"api_key_env={self.config.api_key_env!r})"
        )
