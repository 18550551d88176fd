"""Pass rate: the share of a code task's unit tests that the conversation's final code passes.

The code is extracted by the shared ``ArtifactExtractor`` (kind "code") and run against the
task's tests in a ``collabrl.sandbox.Sandbox``; tasks state their tests as described in
``collabrl.sandbox.gate``. Value: tests passed / tests expected (check style: one test, so 0 or
1); a timeout or an exceeded resource limit (output over the cap and running into the process
limit included) scores 0, since the code is at fault. A sandbox
error (it could not start, the tests do not load) is ``unscored("sandbox_error:...")``, never 0,
and so is a task without usable tests. No code in the conversation (the extractor answers NONE)
scores 0; a failed extraction is unscored (``missing_artifact_score``). Where the isolation is
weak and not opted into, the sandbox raises ``SandboxRefused`` (a ``ConfigError``) and nothing
runs; every score's detail says the ``isolation`` level and whether it was ``weak_isolation``.

Run ``collabrl.sandbox.check_task_set`` on a task set before scoring it, so that a broken reference
or tests that pass anything never turn into rewards.
"""

from __future__ import annotations

from collabrl.metrics.extraction import ArtifactExtractor, missing_artifact_score
from collabrl.sandbox import Sandbox
from collabrl.sandbox.gate import CodeTests
from collabrl.types import Conversation, Score, Task


class PassRate:
    """Share of the task's tests the extracted code passes, run in ``sandbox``."""

    name = "pass_rate"
    artifact = "code"

    def __init__(self, extractor: ArtifactExtractor, sandbox: Sandbox) -> None:
        self.extractor = extractor
        self.sandbox = sandbox

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        try:
            tests = CodeTests.from_task(task)
        except ValueError as err:
            return Score.unscored(f"not_a_code_task: {err}")
        extraction = await self.extractor.extract(conversation, task)
        if extraction.text is None:
            return missing_artifact_score(extraction)
        result = await tests.run(self.sandbox, extraction.text)
        detail = {
            "verdict": result.verdict,
            "resource": result.resource,
            "isolation": result.isolation,
            "weak_isolation": result.weak_isolation,
            "allow_weak_isolation": self.sandbox.allow_weak_isolation,
            "tests_run": result.tests_run,
            "tests_passed": result.tests_passed,
            "tests_expected": result.tests_expected,
            "sandbox_reason": result.reason,
            "failures": list(result.failures),
            "extracted": extraction.text,
            "extraction_method": extraction.method,
        }
        if result.verdict == "error":
            return Score.unscored(f"sandbox_error:{result.reason}", extraction.raw, **detail)
        return Score(value=result.pass_rate, raw=extraction.raw, detail=detail)
