"""Server-sent events for the fake server: a finished reply re-cut into a streamed one.

The fake server builds the same reply object it would send without streaming, and these functions
turn it into the event sequence each API streams (OpenAI ``chat.completion.chunk`` events ending
in ``[DONE]``; Anthropic ``message_start`` ... ``message_stop``), one word per text delta. A
``cut`` behaviour sends only the first half of the events, then closes the connection.
"""

from __future__ import annotations

import json
from typing import Any

# One event: (event name or None, data: a JSON object or a raw string such as "[DONE]").
Event = tuple[str | None, Any]


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + words[-1:] if text else []


def openai_events(completion: dict[str, Any]) -> list[Event]:
    """The chunks of a ``chat.completion`` (its first choice), then ``[DONE]``."""
    choice = completion["choices"][0]
    message = choice["message"]
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }

    def chunk(delta: dict[str, Any], finish: str | None) -> Event:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""}, None)]
    if message.get("refusal"):
        events.append(chunk({"refusal": message["refusal"]}, None))
    events += [chunk({"content": word}, None) for word in _words(message.get("content") or "")]
    events.append(chunk({}, choice["finish_reason"]))
    events.append((None, "[DONE]"))
    return events


def anthropic_events(message: dict[str, Any]) -> list[Event]:
    """The Messages streaming events of a ``message`` with one text block."""
    text = "".join(b.get("text", "") for b in message["content"])
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**message["usage"], "output_tokens": 0},
    }
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events += [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
        )
        for word in _words(text)
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def encode(event: Event) -> bytes:
    name, data = event
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode()
