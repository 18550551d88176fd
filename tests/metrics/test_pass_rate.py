"""The pass-rate metric: extracted code run against the task's tests in the sandbox."""

from __future__ import annotations

import asyncio
from textwrap import dedent

import pytest

from collabrl.backends.errors import TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import ConfigError, SandboxConfig
from collabrl.metrics.base import Metric
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.metrics.pass_rate import PassRate
from collabrl.metrics.registry import build_metric
from collabrl.sandbox import Sandbox, SandboxRefused
from collabrl.types import Conversation, Task

ADD = "def add(a, b):\n    return a + b"
CHECK_ADD = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
UNITTEST_ADD = dedent("""\
    import unittest

    class TestAdd(unittest.TestCase):
        def test_small(self):
            self.assertEqual(add(1, 2), 3)

        def test_big(self):
            self.assertEqual(add(1000, 1), 1001)
    """)


def code_task(tests=CHECK_ADD, style="check", **metadata) -> Task:
    return Task(
        id="add",
        description="write a function",
        intent="Write add(a, b).",
        artifact="code",
        reference=tests,
        metadata={"test_style": style, "entry_point": "add", **metadata},
    )


def conversation_with(code: str) -> Conversation:
    return Conversation.of(
        ("user", "I need an add function."), ("assistant", f"Here it is:\n```python\n{code}\n```")
    )


def extractor_replying(reply: str) -> ArtifactExtractor:
    return ArtifactExtractor(ScriptedBackend([reply]))


def artifact(code: str) -> str:
    return f"<<<ARTIFACT $call_id>>>\n{code}\n<<<END ARTIFACT $call_id>>>"


@pytest.fixture
def sandbox() -> Sandbox:
    """The best level here, weak ones too (refusing them is tested below and in test_sandbox*)."""
    return Sandbox(timeout_s=2, allow_weak_isolation=True)


async def test_correct_code_scores_one(sandbox):
    metric = PassRate(extractor_replying(artifact(ADD)), sandbox)
    score = await metric(conversation_with(ADD), code_task())
    assert isinstance(metric, Metric) and metric.name == "pass_rate"
    assert score.value == 1.0 and len(score.raw) == 1
    detail = score.detail
    assert (detail["verdict"], detail["tests_run"], detail["tests_passed"]) == ("pass", 1, 1)
    assert detail["isolation"] == (await sandbox.isolation()).level
    assert detail["weak_isolation"] == bool((await sandbox.isolation()).weaknesses)
    assert detail["allow_weak_isolation"] is True
    assert detail["extracted"] == ADD and detail["extraction_method"] == "llm"


async def test_the_value_is_the_share_of_unittest_tests_passed(sandbox):
    code = "def add(a, b):\n    return a + b if a < 100 else 0"
    score = await PassRate(extractor_replying(artifact(code)), sandbox)(
        conversation_with(code), code_task(UNITTEST_ADD, "unittest")
    )
    assert score.value == 0.5 and score.detail["verdict"] == "fail"
    assert score.detail["failures"][0].startswith("TestAdd.test_big")


async def test_a_timeout_scores_zero(sandbox):
    code = "def add(a, b):\n    while True:\n        pass"
    score = await PassRate(extractor_replying(artifact(code)), sandbox)(
        conversation_with(code), code_task()
    )
    assert score.value == 0.0 and score.detail["verdict"] == "timeout"


async def test_a_resource_limit_scores_zero(sandbox):
    code = "def add(a, b):\n    return len(bytearray(10**11))"
    score = await PassRate(extractor_replying(artifact(code)), sandbox)(
        conversation_with(code), code_task()
    )
    assert score.value == 0.0 and score.detail["verdict"] == "resource_exceeded"


async def test_output_over_the_cap_scores_zero():
    code = "print('x' * 100_000)\ndef add(a, b):\n    return a + b"
    box = Sandbox(output_limit=1000, allow_weak_isolation=True)
    score = await PassRate(extractor_replying(artifact(code)), box)(
        conversation_with(code), code_task()
    )
    assert score.value == 0.0 and score.detail["verdict"] == "resource_exceeded"
    assert score.detail["resource"] == "output"


async def test_weak_isolation_is_refused_before_any_code_runs():
    metric = PassRate(extractor_replying(artifact(ADD)), Sandbox(isolation="process"))
    with pytest.raises(SandboxRefused) as refusal:
        await metric(conversation_with(ADD), code_task())
    assert isinstance(refusal.value, ConfigError) and "bubblewrap" in str(refusal.value)


async def test_the_opt_in_is_recorded_in_every_score():
    box = Sandbox(timeout_s=5, isolation="process", allow_weak_isolation=True)
    score = await PassRate(extractor_replying(artifact(ADD)), box)(
        conversation_with(ADD), code_task()
    )
    assert score.value == 1.0 and score.detail["isolation"] == "process"
    assert score.detail["weak_isolation"] is True and score.detail["allow_weak_isolation"] is True


async def test_a_sandbox_error_is_unscored_not_zero(sandbox):
    score = await PassRate(extractor_replying(artifact(ADD)), sandbox)(
        conversation_with(ADD), code_task("def check(candidate)\n")
    )
    assert not score.scored and score.reason.startswith("sandbox_error:")
    assert score.detail["verdict"] == "error"


async def test_no_code_in_the_conversation_scores_zero(sandbox):
    conversation = Conversation.of(
        ("user", "I need an add function."), ("assistant", "Sure, soon.")
    )
    score = await PassRate(extractor_replying("NONE"), sandbox)(conversation, code_task())
    assert score.value == 0.0 and score.detail["reason"] == "no_artifact"


async def test_the_last_code_block_is_used_when_the_extractor_misses_it(sandbox):
    score = await PassRate(extractor_replying("NONE"), sandbox)(conversation_with(ADD), code_task())
    assert score.value == 1.0 and score.detail["extraction_method"] == "last_code_block"


async def test_a_failed_extraction_is_unscored(sandbox):
    def outage(messages, params, index):
        raise TransientError("down")

    extractor = ArtifactExtractor(ScriptedBackend(reply_fn=outage))
    score = await PassRate(extractor, sandbox)(conversation_with(ADD), code_task())
    assert not score.scored and score.reason.startswith("extract_error")


@pytest.mark.parametrize(
    "task",
    [
        Task(id="t", description="d", intent="i", artifact="answer", reference="3"),
        code_task(style="doctest"),
        code_task(entry_point=None),
        Task(
            id="t", description="d", intent="i", artifact="code", metadata={"test_style": "check"}
        ),
    ],
)
async def test_a_task_without_usable_tests_is_unscored(sandbox, task):
    score = await PassRate(extractor_replying(artifact(ADD)), sandbox)(conversation_with(ADD), task)
    assert not score.scored and score.reason.startswith("not_a_code_task")


async def test_setup_code_comes_from_the_task(sandbox):
    code = "def add(a, b):\n    return fsum([a, b])"
    task = code_task(
        "def check(candidate):\n    assert candidate(0.1, 0.2) == 0.30000000000000004\n",
        setup_code="from math import fsum",
    )
    score = await PassRate(extractor_replying(artifact(code)), sandbox)(
        conversation_with(code), task
    )
    assert score.value == 1.0


async def test_concurrent_scores_share_one_sandbox(sandbox):
    metric = PassRate(extractor_replying(artifact(ADD)), sandbox)
    scores = await asyncio.gather(*(metric(conversation_with(ADD), code_task()) for _ in range(4)))
    assert [s.value for s in scores] == [1.0] * 4


def test_the_registry_builds_it_with_its_options():
    backend = ScriptedBackend(name="judge")
    extractor = ArtifactExtractor(backend)
    metric = build_metric(
        "pass_rate",
        {"timeout_s": 3.0, "memory_mb": 512, "isolation": "process"},
        backends=lambda role: backend,
        extractor_for=lambda role: extractor,
    )
    assert isinstance(metric, PassRate) and metric.extractor is extractor
    assert (metric.sandbox.timeout_s, metric.sandbox.memory_mb) == (3.0, 512)
    assert metric.sandbox.requested == "process" and not metric.sandbox.allow_weak_isolation


def test_the_sandbox_section_applies_to_the_metric():
    backend = ScriptedBackend(name="judge")
    metric = build_metric(
        "pass_rate",
        {},
        backends=lambda role: backend,
        extractor_for=lambda role: ArtifactExtractor(backend),
        sandbox=SandboxConfig(allow_weak_isolation=True),
    )
    assert metric.sandbox.allow_weak_isolation
    with pytest.raises(ValueError, match="allow_weak_isolation"):
        build_metric(
            "pass_rate",
            {"allow_weak_isolation": True},
            backends=lambda role: backend,
            extractor_for=lambda role: ArtifactExtractor(backend),
        )
