"""Code tasks and the sandbox: how a task states its tests, and the gate run before scoring a set.

Convention (what task loaders produce): ``task.artifact == "code"``; ``task.reference`` is the
test code; ``task.metadata["test_style"]`` is ``"check"`` (HumanEval: the tests define
``check(candidate)``, one test) or ``"unittest"`` (BigCodeBench: each ``test*`` method is one
test); ``metadata["entry_point"]`` names the function under test; ``metadata["setup_code"]``
(optional) is prepended to the code; ``metadata["canonical_solution"]`` (complete code) is what
the gate runs.

The gate: a task whose reference solution does not pass, or whose tests an empty solution (the
entry point defined to return None) passes, would hand out wrong rewards, so ``check_task_set`` runs both for every task and lists
the tasks that violate either rule; the caller refuses the set (``GateReport.raise_for_violations``)
or drops those tasks (``GateReport.keep``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from collabrl.sandbox.core import Sandbox, SandboxResult
from collabrl.sandbox.isolation import SandboxUnavailable
from collabrl.types import Task

Problem = Literal[
    "not_code",
    "bad_tests_metadata",
    "no_canonical_solution",
    "reference_fails",
    "empty_passes",
    "sandbox_error",
]


class CodeTests(BaseModel):
    """The tests of a code task, read from the task (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    tests: str
    test_style: Literal["check", "unittest"]
    entry_point: str | None = None
    setup_code: str | None = None

    @classmethod
    def from_task(cls, task: Task) -> CodeTests:
        """Raises ValueError, with a short reason, when the task does not follow the convention."""
        if task.artifact != "code":
            raise ValueError(f"artifact is {task.artifact!r}, not 'code'")
        meta = task.metadata
        style, entry_point = meta.get("test_style"), meta.get("entry_point")
        if not task.reference or style not in ("check", "unittest"):
            raise ValueError("needs reference tests and metadata test_style 'check' or 'unittest'")
        if style == "check" and not entry_point:
            raise ValueError("check-style tests need metadata entry_point")
        return cls(
            tests=task.reference,
            test_style=style,
            entry_point=entry_point,
            setup_code=meta.get("setup_code"),
        )

    async def run(self, sandbox: Sandbox, code: str) -> SandboxResult:
        return await sandbox.run_tests(
            code, self.tests, self.test_style, self.entry_point, self.setup_code
        )


class GateViolation(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_id: str
    problem: Problem
    detail: str = ""


class GateReport(BaseModel):
    """Which tasks of a set can be scored; ``violations`` lists the others, one line each."""

    model_config = ConfigDict(frozen=True)

    checked: int
    isolation: str
    violations: tuple[GateViolation, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def bad_ids(self) -> frozenset[str]:
        return frozenset(v.task_id for v in self.violations)

    def keep(self, tasks: Sequence[Task]) -> list[Task]:
        """``tasks`` without those that violate the gate."""
        return [t for t in tasks if t.id not in self.bad_ids]

    def message(self) -> str:
        lines = [
            f"{len(self.bad_ids)} of {self.checked} code tasks fail the sandbox gate "
            f"(isolation {self.isolation}):"
        ]
        lines += [f"  {v.task_id}: {v.problem} {v.detail}".rstrip() for v in self.violations]
        return "\n".join(lines)

    def raise_for_violations(self) -> None:
        if not self.ok:
            raise GateError(self.message())


class GateError(ValueError):
    """A task set whose reference solutions or tests cannot be trusted."""


async def check_task_set(tasks: Sequence[Task], sandbox: Sandbox) -> GateReport:
    """Run every task's reference and empty solutions; report the tasks that break the rules.
    Raises ``SandboxRefused`` before running anything where the isolation is weak."""
    try:
        isolation = (await sandbox.isolation()).level
    except SandboxUnavailable as err:  # then every run below is an error too
        isolation = f"none ({err})"
    found = await asyncio.gather(*(_check_task(task, sandbox) for task in tasks))
    violations = tuple(v for task_violations in found for v in task_violations)
    return GateReport(checked=len(tasks), isolation=isolation, violations=violations)


async def _check_task(task: Task, sandbox: Sandbox) -> list[GateViolation]:
    try:
        spec = CodeTests.from_task(task)
    except ValueError as err:
        problem = "not_code" if task.artifact != "code" else "bad_tests_metadata"
        return [GateViolation(task_id=task.id, problem=problem, detail=str(err))]
    canonical = task.metadata.get("canonical_solution")
    if not canonical:
        return [GateViolation(task_id=task.id, problem="no_canonical_solution")]
    reference, empty = await asyncio.gather(
        spec.run(sandbox, canonical), spec.run(sandbox, empty_solution(spec))
    )
    violations = []
    for which, result, wanted in (("reference", reference, True), ("empty", empty, False)):
        if result.verdict == "error":
            violations.append(_violation(task, "sandbox_error", f"{which} solution", result))
        elif (result.verdict == "pass") != wanted:
            problem = "reference_fails" if wanted else "empty_passes"
            violations.append(_violation(task, problem, "", result))
    return violations


def empty_solution(spec: CodeTests) -> str:
    """Code that does nothing: the entry point, when known, defined to return None."""
    if spec.entry_point:
        return f"def {spec.entry_point}(*args, **kwargs):\n    return None\n"
    return "pass\n"


def _violation(task: Task, problem: Problem, prefix: str, result: SandboxResult) -> GateViolation:
    why = "; ".join(filter(None, [result.reason, *result.failures[:2]]))
    detail = f"{prefix}: {result.verdict}: {why}" if prefix else f"{result.verdict}: {why}"
    return GateViolation(task_id=task.id, problem=problem, detail=detail[:500])
