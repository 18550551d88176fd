"""Any OpenAI-compatible chat endpoint as a Backend: OpenAI, vLLM, SGLang, Ollama, llama.cpp, TGI.

Each sample request is ONE attempt through the official ``openai`` client with its own retries
off (``max_retries=0``): retries, backoff, rate and concurrency limits, deadlines and caching are
wrappers around every backend, and they need each failure reported once, as a typed error of
``collabrl.backends.errors``. Hence the translation here: 429 -> RateLimitedError (with the
server's Retry-After / retry-after-ms), ``insufficient_quota`` -> QuotaExceededError,
400/401/403/404/422 -> RequestRejectedError, 408/409/5xx, resets, cut or unreadable bodies ->
TransientError, no answer within ``retry.attempt_timeout_s`` -> AttemptTimeoutError (the SDK
timeout bounds each read; an outer bound caps the whole attempt). Messages name the status,
model and base URL, never the key (and never request headers).

The API key is read at call time from the environment variable named by ``api_key_env``, so a
rotated key is picked up without a restart. Local servers (loopback or private-network
addresses, ``localhost``) usually need no key: if the variable is unset there, the placeholder
``"EMPTY"`` is sent (vLLM's convention) instead of failing.

``n`` samples: servers that ignore ``n`` (llama.cpp) return one choice; the missing samples
are requested in parallel with ``n=1``, seeded with ``params.sample_seed(i)`` when a seed is set,
so a call always returns exactly ``n`` completions. Once a server is seen ignoring ``n``, later
calls send the ``n`` single-sample requests at once.

Usage: per HTTP response, its prompt tokens go on the first completion it produced and its
completion tokens are split evenly across its choices (remainder to the first ones), so the
sums over the completions equal what the server billed.

Streaming (``stream``, for people watching a reply appear): the same request with
``stream: true`` over the same clients, read as server-sent events; a stream that ends without a
finish reason raises IncompleteOutputError, and each read is bounded by ``attempt_timeout_s``.

Error translation, key handling and parallel fan-out are shared with the Anthropic backend in
``collabrl.backends.http_api``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, TypeVar

import httpx2
import openai

from collabrl.backends.errors import AttemptTimeoutError, IncompleteOutputError, TransientError
from collabrl.backends.http_api import (
    backend_error,
    gather_or_cancel,
    public_url,
    resolve_api_key,
    split_evenly,
)
from collabrl.config import OpenAIBackendConfig
from collabrl.types import Completion, FinishReason, GenerationParams, Message, Usage

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
CONNECTIONS_PER_CLIENT = 16

_T = TypeVar("_T")

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "eos_token": "stop",  # TGI
    "stop_sequence": "stop",  # TGI
    "tool_calls": "stop",
    "function_call": "stop",
    "length": "length",
    "content_filter": "refusal",
}


class OpenAICompatBackend:
    """A Backend for an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, config: OpenAIBackendConfig) -> None:
        self.config = config
        self._base_url = public_url(config.base_url or OPENAI_DEFAULT_BASE_URL)
        self._where = f"model {config.model!r} at {self._base_url}"
        self._timeout = config.retry.attempt_timeout_s
        self._server_ignores_n = False
        # The HTTP client's connection pool scans every connection for each request it places,
        # so one pool for hundreds of concurrent requests costs quadratic CPU; a few smaller
        # pools, used in turn, keep that cost flat.
        shards = math.ceil(config.max_concurrency / CONNECTIONS_PER_CLIENT)
        self._clients = [
            openai.AsyncOpenAI(
                api_key=self._api_key,  # an async callable: the SDK asks for the key per request
                base_url=config.base_url or OPENAI_DEFAULT_BASE_URL,
                max_retries=0,
                timeout=self._timeout,
            )
            for _ in range(shards)
        ]
        self._next_client = itertools.cycle(self._clients)

    async def _api_key(self) -> str:
        return resolve_api_key(self.config.api_key_env, self.config.base_url, self._where)

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        if self._server_ignores_n and params.n > 1:
            return await self._one_by_one(messages, params, range(params.n))
        response = await self._request(messages, params, params.n, params.sample_seed(0))
        completions = self._completions(response)[: params.n]
        if len(completions) < params.n:
            self._server_ignores_n = True
            missing = range(len(completions), params.n)
            completions += await self._one_by_one(messages, params, missing)
        return completions

    async def _one_by_one(
        self, messages: Sequence[Message], params: GenerationParams, indices: Iterable[int]
    ) -> list[Completion]:
        """Samples ``indices`` as parallel ``n=1`` requests, each seeded by its index."""
        responses = await gather_or_cancel(
            self._request(messages, params, 1, params.sample_seed(i)) for i in indices
        )
        return [self._completions(r)[0] for r in responses]

    async def _request(
        self, messages: Sequence[Message], params: GenerationParams, n: int, seed: int | None
    ) -> Any:
        body = self._body(messages, params, n, seed)
        try:
            # The documented low-level call: the body goes out as JSON as it is. ``create()`` would
            # first walk every message through the SDK's type transforms and build pydantic models
            # for the answer, which costs more CPU than the rest of a simulation step put together.
            text = await asyncio.wait_for(
                next(self._next_client).post("/chat/completions", body=body, cast_to=str),
                self._timeout,
            )
            return json.loads(text)
        except (openai.APIError, asyncio.TimeoutError, json.JSONDecodeError) as error:
            raise backend_error(error, openai, self._where) from None

    def _body(
        self, messages: Sequence[Message], params: GenerationParams, n: int, seed: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [m.to_openai() for m in messages],
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        body.update(self.config.extra_body)
        return body

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """Sample ``params.first_sample``'s text as the server sends it."""
        body = self._body(messages, params, 1, params.sample_seed(0)) | {"stream": True}
        finished = False
        try:
            events = await next(self._next_client).post(
                "/chat/completions",
                body=body,
                cast_to=dict,
                stream=True,
                stream_cls=openai.AsyncStream[dict],
            )
            async with events:
                async for event in events:
                    for choice in (event.get("choices") or [])[:1]:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or delta.get("refusal")
                        if text:
                            yield text
                        finished = finished or bool(choice.get("finish_reason"))
        except (openai.APIError, asyncio.TimeoutError, json.JSONDecodeError) as error:
            raise backend_error(error, openai, self._where) from None
        except httpx2.TimeoutException:
            raise AttemptTimeoutError(
                f"no data within the attempt timeout from {self._where}"
            ) from None
        except httpx2.TransportError as error:
            raise TransientError(f"the stream from {self._where} broke: {error!r}") from None
        if not finished:
            raise IncompleteOutputError(f"the stream from {self._where} ended before the reply did")

    def _completions(self, response: Any) -> list[Completion]:
        """The response's choices as Completions, in index order, with usage shares."""
        choices = response.get("choices") if isinstance(response, dict) else None
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, dict) for c in choices)
        ):
            raise TransientError(f"invalid response from {self._where}: no choices")
        choices = sorted(choices, key=lambda c: c.get("index") or 0)
        usage = response.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens") or 0
        shares = split_evenly(usage.get("completion_tokens") or 0, len(choices))
        completions = []
        for i, (choice, share) in enumerate(zip(choices, shares)):
            message = choice.get("message")
            if not isinstance(message, dict):
                raise TransientError(
                    f"invalid response from {self._where}: a choice has no message"
                )
            refusal = message.get("refusal")
            completions.append(
                Completion(
                    text=message.get("content") or refusal or "",
                    finish_reason=openai_finish_reason(choice.get("finish_reason"), refusal),
                    usage=Usage(
                        prompt_tokens=prompt_tokens if i == 0 else 0, completion_tokens=share
                    ),
                )
            )
        return completions

    def identity(self) -> dict[str, str]:
        return {"kind": "openai", "model": self.config.model, "base_url": self._base_url}

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()

    def __repr__(self) -> str:
        return (
            f"OpenAICompatBackend(model={self.config.model!r}, base_url={self._base_url!r}, "
            f"api_key_env={self.config.api_key_env!r})"
        )


def openai_finish_reason(raw: str | None, refusal: str | None = None) -> FinishReason:
    """Normalise an OpenAI-style finish reason; a non-empty ``refusal`` wins."""
    if refusal:
        return "refusal"
    return _FINISH_REASONS.get(raw or "", "incomplete")
