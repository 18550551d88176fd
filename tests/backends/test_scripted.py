"""The scripted backend: rules, cycling replies, reply functions, call log."""

import pytest

from collabrl.backends.errors import RequestRejectedError, TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import load_config
from collabrl.types import Completion, GenerationParams, Message


def msgs(text):
    return [Message(role="user", content=text)]


async def test_rules_win_then_replies_cycle():
    backend = ScriptedBackend(["a", "b"], rules=[("weather", "sunny")])
    assert (await backend.generate(msgs("the weather?"), GenerationParams()))[0].text == "sunny"
    texts = [c.text for c in await backend.generate(msgs("x"), GenerationParams(n=3))]
    assert texts == ["a", "b", "a"]
    assert len(backend.calls) == 2 and backend.calls[1].params.n == 3


async def test_reply_fn_sees_sample_index_and_may_be_async():
    async def reply(messages, params, index):
        return f"{messages[-1].content}:{index}"

    backend = ScriptedBackend(reply_fn=reply)
    out = await backend.generate(msgs("q"), GenerationParams(n=2, first_sample=4))
    assert [c.text for c in out] == ["q:4", "q:5"]
    assert out[0].usage.prompt_tokens == 1 and out[1].usage.prompt_tokens == 0


async def test_reply_fn_may_return_completions_or_raise():
    backend = ScriptedBackend(
        reply_fn=lambda m, p, i: Completion(text="x", finish_reason="refusal")
    )
    assert (await backend.generate(msgs("q"), GenerationParams()))[0].finish_reason == "refusal"

    def fail(m, p, i):
        raise TransientError("scripted outage", status=503)

    with pytest.raises(TransientError):
        await ScriptedBackend(reply_fn=fail).generate(msgs("q"), GenerationParams())


async def test_no_matching_rule_is_a_rejected_request():
    backend = ScriptedBackend([], rules=[("a", "b")])
    with pytest.raises(RequestRejectedError, match="no scripted rule"):
        await backend.generate(msgs("zzz"), GenerationParams())


async def test_from_config():
    cfg = load_config(
        None,
        [
            "roles.u.kind=scripted",
            "roles.u.replies=[x]",
            "roles.u.rules=[{contains: hi, reply: hey}]",
        ],
    ).role("u")
    backend = ScriptedBackend.from_config(cfg)
    assert (await backend.generate(msgs("hi there"), GenerationParams()))[0].text == "hey"
    assert (await backend.generate(msgs("yo"), GenerationParams()))[0].text == "x"


async def test_a_rule_with_request_contains_also_needs_that_text_anywhere_in_the_request():
    cfg = load_config(
        None,
        [
            "roles.u.kind=scripted",
            "roles.u.replies=[generic]",
            "roles.u.rules=[{contains: start, request_contains: poem, reply: a poem please},"
            " {contains: start, reply: an email please}]",
        ],
    ).role("u")
    backend = ScriptedBackend.from_config(cfg)
    poem = [Message(role="system", content="The user wants a poem."), *msgs("start")]
    email = [Message(role="system", content="The user wants an email."), *msgs("start")]
    assert (await backend.generate(poem, GenerationParams()))[0].text == "a poem please"
    assert (await backend.generate(email, GenerationParams()))[0].text == "an email please"
    assert (await backend.generate(msgs("poem"), GenerationParams()))[0].text == "generic"
