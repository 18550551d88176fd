"""The verdict of a sandbox run, judged from what the run left behind (see ``core``'s docstring).

What came back is the captured output (kept up to a cap, the rest read away), the exit code,
whether the wall-clock limit passed, and the nonce-carrying records of the runner (``started``,
``invalid``, ``final``) and of the launcher (``reaped``: processes it had to kill). Nothing the
code prints counts: the verdict rests on those records, the exit code and the limits.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Verdict = Literal["pass", "fail", "timeout", "resource_exceeded", "error"]
_SIGNALS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size", signal.SIGKILL: "killed"}


class SandboxResult(BaseModel):
    """The outcome of one run; ``stdout``/``stderr`` are excerpts (``truncated`` when cut)."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    tests_expected: int = 0
    tests_run: int = 0
    tests_passed: int = 0
    pass_rate: float | None = None
    isolation: str
    weak_isolation: bool = False
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    resource: str | None = None
    reason: str | None = None
    failures: tuple[str, ...] = ()


class _Final(BaseModel):
    tests_run: int
    tests_passed: int
    failures: list[str]
    resource: str | None
    import_error: str | None


@dataclass
class Capture:
    """One output stream of a run, kept up to ``limit`` bytes (``truncated`` when it went over)."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    async def drain(self, stream: asyncio.StreamReader) -> None:
        """Keep the first ``limit`` bytes and read the rest away, so the writer never blocks."""
        while chunk := await stream.read(1 << 16):
            room = self.limit - len(self.data)
            self.truncated |= len(chunk) > room
            self.data += chunk[: max(room, 0)]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class Raw:
    """What came back from one run, before it is judged."""

    returncode: int | None
    timed_out: bool
    stdout: Capture
    stderr: Capture
    records: list[dict]


@dataclass(frozen=True)
class Limits:
    """The limits a verdict is judged against."""

    timeout_s: float
    output_limit: int
    max_processes: int


def judge(raw: Raw, level: str, duration_s: float, limits: Limits) -> SandboxResult:
    """The verdict (see the module docstring) from what the run left behind."""
    base = {
        "isolation": level,
        "duration_s": round(duration_s, 3),
        "stdout": raw.stdout.text(),
        "stderr": raw.stderr.text(),
        "truncated": raw.stdout.truncated or raw.stderr.truncated,
    }
    kinds: dict[str, dict] = {}
    for record in raw.records:
        kinds.setdefault(str(record.get("kind")), record)
    started = kinds.get("started", {}).get("expected")
    if not isinstance(started, int) or started < 1:
        reason = kinds.get("invalid", {}).get("reason") or _no_start(raw, limits.timeout_s)
        return SandboxResult(verdict="error", reason=str(reason), **base)
    try:
        final = _Final.model_validate(kinds["final"]) if "final" in kinds else None
    except ValidationError:
        final = None
    counts = {"tests_expected": started}
    if final is not None and 0 <= final.tests_passed <= final.tests_run <= started:
        counts.update(
            tests_run=final.tests_run,
            tests_passed=final.tests_passed,
            failures=tuple(final.failures),
        )
    else:
        final = None
    left = kinds.get("reaped", {}).get("count")
    verdict, resource, reason = _verdict(
        raw, final, started, limits, left if isinstance(left, int) else 0
    )
    rate = {"pass": 1.0, "fail": counts.get("tests_passed", 0) / started}.get(verdict, 0.0)
    return SandboxResult(
        verdict=verdict, pass_rate=rate, resource=resource, reason=reason, **counts, **base
    )


def _verdict(raw: Raw, final: _Final | None, expected: int, limits: Limits, left: int):
    if raw.timed_out:
        return "timeout", None, f"no result within {limits.timeout_s:g} s"
    if raw.stdout.truncated or raw.stderr.truncated:
        return (
            "resource_exceeded",
            "output",
            f"output over the limit of {limits.output_limit} bytes",
        )
    if left >= max(1, limits.max_processes // 2):
        return (
            "resource_exceeded",
            "processes",
            (
                f"{left} processes left running (limit {limits.max_processes}): the code ran into "
                "the process limit"
            ),
        )
    if final is None:
        signum = (raw.returncode or 0) - 128
        if signum in _SIGNALS:
            return "resource_exceeded", _SIGNALS[signum], f"runner killed by signal {signum}"
        return "fail", None, f"the runner ended before reporting (exit code {raw.returncode})"
    if final.resource:
        return "resource_exceeded", final.resource, f"{final.resource} limit exceeded"
    if final.import_error:
        return "fail", None, f"the code failed to load: {final.import_error}"
    if raw.returncode != 0:
        return "fail", None, f"the runner exited with code {raw.returncode}"
    if final.tests_run == final.tests_passed == expected:
        return "pass", None, None
    return "fail", None, f"{final.tests_passed}/{expected} tests passed"


def _no_start(raw: Raw, timeout_s: float) -> str:
    if raw.timed_out:
        return f"the runner did not start within {timeout_s:g} s"
    tail = raw.stderr.text()[-400:].strip()
    return f"the sandbox did not start (exit code {raw.returncode}): {tail}"
