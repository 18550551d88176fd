"""Canned replies for every role of a simulation, recognised from the prompt they answer.

Benchmarks and tests that run the whole method against a fake server need each request to get
a reply of the right shape: the user simulator a JSON turn, the interactivity judge a grade line,
the extractor an artifact block, the policy an answer. ``roleplay_reply`` tells them apart from
the prompt text alone (collabrl's own templates), so one server can play every role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from collabrl.metrics.framing import find_call_id


def _text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def roleplay_reply(messages: Sequence[Mapping[str, Any]], index: int = 0) -> str:
    """A reply suited to whichever collabrl prompt ``messages`` is."""
    text = _text(messages)
    if "<<<REQUEST" in text:  # the user simulator's instructions
        turns = sum(1 for m in messages if m.get("role") == "assistant")
        topic = " ".join(text.split("<<<REQUEST", 1)[1].split()[:6])
        message = f"hi, I need help with: {topic}" if turns == 0 else f"more detail, take {index}"
        return json.dumps({"thought": "t", "message": message, "terminate": False})
    call = find_call_id(text)  # judge and extractor prompts state one; replies must carry it
    if call is not None and f"<<<ARTIFACT {call}>>>" in text:
        return f"<<<ARTIFACT {call}>>>\n42\n<<<END ARTIFACT {call}>>>"
    if call is not None and f"GRADE {call}:" in text:
        return f"The assistant engaged well.\nGRADE {call}: 3"
    return f"Could you say more about what you need? (draft {index})"


def fake_server_reply(request: Any, index: int) -> str:
    """``roleplay_reply`` for ``FakeOpenAIServer(reply_fn=...)``.

    Like a real server sampling at temperature > 0, every request gets a different draw: the one
    its seed picks when the client sends a seed (reproducible across runs), else one numbered by
    the server's request sequence, so sampled futures really differ.
    """
    seed = (request.body or {}).get("seed")
    draw = request.seq if seed is None else seed
    return roleplay_reply(request.messages, draw * 1000 + index)
