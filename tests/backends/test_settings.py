"""A role's explicitly configured sampling settings reach judges and extractors; the rest do not."""

from __future__ import annotations

from collabrl.assembly import metric_builder
from collabrl.backends.scripted import ScriptedBackend
from collabrl.backends.settings import ConfiguredSettings
from collabrl.backends.stack import Roles
from collabrl.config import MetricSpec, load_config
from collabrl.types import Conversation, GenerationParams, Message, Task

JUDGE_DEFAULTS = GenerationParams(temperature=0.0, max_tokens=1024, n=1, first_sample=3)


async def test_only_explicit_fields_override_the_callers_settings():
    inner = ScriptedBackend("ok")
    configured = GenerationParams.model_validate({"max_tokens": 96, "stop": ["###"]})
    await ConfiguredSettings(inner, configured).generate(
        [Message(role="user", content="hi")], JUDGE_DEFAULTS
    )
    sent = inner.calls[0].params
    assert (sent.max_tokens, sent.stop) == (96, ("###",))
    assert (sent.temperature, sent.n, sent.first_sample) == (0.0, 1, 3)  # the caller's


async def test_nothing_configured_changes_nothing():
    inner = ScriptedBackend("ok")
    await ConfiguredSettings(inner, GenerationParams()).generate([], JUDGE_DEFAULTS)
    assert inner.calls[0].params == JUDGE_DEFAULTS


async def test_the_judge_role_max_tokens_reaches_the_interactivity_judge():
    config = load_config(None, ["roles.judge={kind: scripted, generation: {max_tokens: 64}}"])
    scripted = ScriptedBackend("It asked what mattered.\nGRADE $call_id: 3")
    async with Roles(config, use_cache=False, models={"judge": scripted}) as roles:
        judge = metric_builder(roles)(MetricSpec(name="interactivity"), "reward.metrics")
        score = await judge(
            Conversation.of(("user", "hi"), ("assistant", "what for?")),
            Task(id="t", description="d", intent="i"),
        )
    assert score.value is not None
    sent = scripted.calls[0].params
    assert sent.max_tokens == 64 and sent.temperature == 0.0  # configured; the judge's default
