"""The sandbox: every case of reliability.md "Running model-written code", at the best level here.

Cases about what the isolation protects (network, filesystem, process count) run in a sandbox
without the weak-isolation opt-in: it either blocks them or refuses to run at all, and the test
asserts whichever happens (``test_sandbox_isolation.py`` tries them as root and unprivileged,
with and without bubblewrap). Verdict and kill cases opt in, so they run on any machine, and
also at every level that works here. Reward-hacking attempts are in ``test_sandbox_gaming.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from textwrap import dedent

import pytest

from collabrl.sandbox import Sandbox, SandboxRefused, SandboxUnavailable
from collabrl.sandbox import core as sandbox_module
from collabrl.sandbox.gate import GateError, check_task_set
from collabrl.sandbox.isolation import LEVELS
from collabrl.types import Task

ADD = "def add(a, b):\n    return a + b\n"
CHECK_ADD = (
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
)
UNITTEST_ADD = dedent("""\
    import unittest

    class TestAdd(unittest.TestCase):
        def test_small(self):
            self.assertEqual(add(1, 2), 3)

        def test_negative(self):
            self.assertEqual(add(-1, 1), 0)

        def test_big(self):
            self.assertEqual(add(10**6, 1), 10**6 + 1)
    """)
CHECK_ONE = "def check(candidate):\n    assert candidate() == 1\n"
DETACH = dedent("""\
    import os, subprocess, sys, time
    def detach(marker):
        subprocess.Popen(["sleep", marker], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.fork() == 0:  # double fork into a new session, all descriptors closed
            os.setsid()
            if os.fork() == 0:
                os.closerange(0, 1024)
                os.execvp("sleep", ["sleep", marker + "1"])
            os._exit(0)
    """)


def live_processes(marker: str) -> list[str]:
    """Command lines of live (not zombie) processes that mention ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(pid) != os.getpid():
            found.append(cmdline)
    return found


def sandbox_leftovers() -> list[str]:
    return live_processes("sandbox_launcher.py") + live_processes("sandbox_runner.py")


async def runs_here(box: Sandbox) -> bool:
    """Whether ``box`` runs code here; where it does not, its refusal names the fix."""
    try:
        await box.isolation()
    except SandboxRefused as refusal:
        assert "install bubblewrap" in str(refusal) and "allow_weak_isolation" in str(refusal)
        return False
    return True


@pytest.fixture
def sandbox() -> Sandbox:
    """For verdicts: the best level here, even a weak one."""
    return Sandbox(timeout_s=2, allow_weak_isolation=True)


@pytest.fixture
def strict() -> Sandbox:
    """For what the isolation protects: the default, which refuses weak isolation."""
    return Sandbox(timeout_s=2)


@pytest.fixture(params=LEVELS)
async def level_sandbox(request) -> Sandbox:
    """A sandbox forced to each level, weak ones too; skipped where the level does not work."""
    box = Sandbox(timeout_s=2, isolation=request.param, allow_weak_isolation=True)
    try:
        await box.isolation()
    except SandboxUnavailable as err:
        pytest.skip(f"isolation level {request.param!r} does not work here: {err}")
    return box


# ---------------------------------------------------------------- verdicts


async def test_correct_code_passes_check_style_at_every_level(level_sandbox):
    result = await level_sandbox.run_tests(ADD, CHECK_ADD, "check", "add")
    assert result.verdict == "pass", result
    assert (result.tests_expected, result.tests_run, result.tests_passed) == (1, 1, 1)
    assert result.pass_rate == 1.0 and result.isolation == level_sandbox.requested


async def test_correct_code_passes_unittest_style(sandbox):
    result = await sandbox.run_tests(ADD, UNITTEST_ADD, "unittest", "add")
    assert result.verdict == "pass", result
    assert (result.tests_expected, result.tests_run, result.tests_passed) == (3, 3, 3)


async def test_partly_wrong_code_fails_with_its_pass_rate(sandbox):
    wrong_for_big = "def add(a, b):\n    return a + b if abs(a) < 100 else 0\n"
    result = await sandbox.run_tests(wrong_for_big, UNITTEST_ADD, "unittest", "add")
    assert result.verdict == "fail" and result.tests_passed == 2 and result.tests_run == 3
    assert result.pass_rate == pytest.approx(2 / 3)
    assert result.failures and result.failures[0].startswith("TestAdd.test_big")


async def test_a_syntax_error_fails_not_errors(sandbox):
    result = await sandbox.run_tests("def add(a, b)\n    return a +", CHECK_ADD, "check", "add")
    assert result.verdict == "fail" and result.pass_rate == 0.0
    assert "SyntaxError" in result.reason


async def test_missing_entry_point_fails(sandbox):
    result = await sandbox.run_tests(
        "def plus(a, b):\n    return a + b\n", CHECK_ADD, "check", "add"
    )
    assert result.verdict == "fail" and "not defined" in result.failures[0]


async def test_broken_tests_are_an_error_not_a_failure(sandbox):
    result = await sandbox.run_tests(ADD, "def check(candidate)\n    pass", "check", "add")
    assert result.verdict == "error" and result.pass_rate is None
    assert "tests" in result.reason


async def test_an_interpreter_that_does_not_start_is_an_error():
    box = Sandbox(python="/nonexistent/python3", allow_weak_isolation=True)
    result = await box.run_tests(ADD, CHECK_ADD, "check", "add")
    assert result.verdict == "error" and result.pass_rate is None
    assert "does not start" in result.reason


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="isolation"):
        Sandbox(isolation="docker")
    with pytest.raises(ValueError, match="positive"):
        Sandbox(timeout_s=0)


async def test_bad_test_style_is_refused(sandbox):
    with pytest.raises(ValueError, match="test_style"):
        await sandbox.run_tests(ADD, CHECK_ADD, "doctest", "add")
    with pytest.raises(ValueError, match="entry point"):
        await sandbox.run_tests(ADD, CHECK_ADD, "check")


async def test_output_over_the_cap_is_truncated_and_fails():
    box = Sandbox(timeout_s=5, output_limit=1000, allow_weak_isolation=True)
    chatty = "import sys\nprint('x' * 200_000)\nprint('e' * 5000, file=sys.stderr)\n" + ADD
    result = await box.run_tests(chatty, CHECK_ADD, "check", "add")
    assert result.verdict == "resource_exceeded" and result.resource == "output", result
    assert result.truncated and result.pass_rate == 0.0 and "1000 bytes" in result.reason
    assert len(result.stdout) == 1000 and len(result.stderr) == 1000


async def test_short_output_is_kept_whole(sandbox):
    result = await sandbox.run_tests("print('hello')\n" + ADD, CHECK_ADD, "check", "add")
    assert result.stdout == "hello\n" and not result.truncated


async def test_setup_code_is_prepended_to_the_code(sandbox):
    code = "def hyp(a, b):\n    return sqrt(a * a + b * b)\n"
    tests = "def check(candidate):\n    assert candidate(3, 4) == 5.0\n"
    result = await sandbox.run_tests(
        code, tests, "check", "hyp", setup_code="from math import sqrt"
    )
    assert result.verdict == "pass", result


async def test_runs_are_limited_to_the_concurrency():
    box = Sandbox(timeout_s=5, concurrency=1, allow_weak_isolation=True)
    slow = "import time\ntime.sleep(0.3)\n" + ADD
    started = time.monotonic()
    results = await asyncio.gather(
        *(box.run_tests(slow, CHECK_ADD, "check", "add") for _ in range(3))
    )
    assert all(r.verdict == "pass" for r in results)
    assert time.monotonic() - started >= 0.9


async def test_honest_code_may_use_subprocesses_and_multiprocessing(sandbox):
    code = dedent("""\
        import multiprocessing, subprocess
        def square(x):
            return x * x
        def f():
            echoed = subprocess.run(["echo", "1"], capture_output=True, text=True).stdout
            with multiprocessing.Pool(2) as pool:
                return int(echoed) * sum(pool.map(square, range(3))) // 5
        """)
    result = await Sandbox(timeout_s=10, allow_weak_isolation=True).run_tests(
        code, CHECK_ONE, "check", "f"
    )
    assert result.verdict == "pass", result


# ---------------------------------------------------------------- kills and limits


async def test_an_endless_loop_times_out_and_leaves_no_process(level_sandbox):
    marker = f"60{uuid.uuid4().int % 10**6}"
    code = DETACH + f"detach({marker!r})\nwhile True:\n    pass\n"
    started = time.monotonic()
    result = await level_sandbox.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "timeout" and result.pass_rate == 0.0, result
    assert time.monotonic() - started < level_sandbox.timeout_s + 2
    assert live_processes(f"sleep {marker}") == [] and sandbox_leftovers() == []


async def test_a_detached_child_is_gone_after_the_verdict(level_sandbox):
    marker = f"60{uuid.uuid4().int % 10**6}"
    code = DETACH + f"detach({marker!r})\ndef f():\n    return 1\n"
    result = await level_sandbox.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "pass", result
    assert live_processes(f"sleep {marker}") == [] and sandbox_leftovers() == []


async def test_a_cancelled_run_leaves_no_process(level_sandbox):
    marker = f"60{uuid.uuid4().int % 10**6}"
    code = DETACH + f"detach({marker!r})\nwhile True:\n    pass\n"
    run = asyncio.ensure_future(level_sandbox.run_tests(code, CHECK_ONE, "check", "f"))
    await asyncio.sleep(0.7)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    deadline = time.monotonic() + 3
    while (
        live_processes(f"sleep {marker}") or sandbox_leftovers()
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert live_processes(f"sleep {marker}") == [] and sandbox_leftovers() == []


async def test_a_fork_loop_exceeds_the_process_limit_and_the_host_is_fine():
    box = Sandbox(timeout_s=10)  # a busy machine slows the fork storm down
    if not await runs_here(box):
        return
    code = "import os\ndef f():\n    while True:\n        os.fork()\n"
    result = await box.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "resource_exceeded" and result.resource == "processes", result
    assert result.pass_rate == 0.0 and sandbox_leftovers() == []
    assert subprocess.run(["true"], check=False).returncode == 0


async def test_code_that_ran_into_the_process_limit_fails_even_if_its_tests_pass():
    box = Sandbox(timeout_s=10, max_processes=16, allow_weak_isolation=True)
    code = dedent("""\
        import os, time
        def f():
            for _ in range(64):
                try:
                    if os.fork() == 0:
                        time.sleep(60)
                        os._exit(0)
                except OSError:
                    break
            return 1
        """)
    result = await box.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "resource_exceeded" and result.resource == "processes", result
    assert result.pass_rate == 0.0 and "left" in result.reason and sandbox_leftovers() == []


async def test_a_huge_allocation_exceeds_the_memory_limit(sandbox):
    code = "def f():\n    return len(bytearray(10**11))\n"
    result = await sandbox.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "resource_exceeded" and result.resource == "memory", result


async def test_a_10_gb_file_exceeds_the_file_size_limit(sandbox):
    code = dedent("""\
        def f():
            with open("big.bin", "wb") as handle:
                for _ in range(10 * 1024):
                    handle.write(b"0" * (1 << 20))
            return 1
        """)
    result = await sandbox.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "resource_exceeded" and result.resource == "file_size", result


async def test_many_files_exceed_the_disk_limit():
    box = Sandbox(timeout_s=5, disk_mb=16, file_size_mb=8)
    if not await runs_here(box):  # a strong level gives the code a size-limited tmpfs
        return
    code = dedent("""\
        def f():
            for i in range(100):
                with open(f"part{i}.bin", "wb") as handle:
                    handle.write(b"0" * (4 << 20))
            return 1
        """)
    result = await box.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "resource_exceeded" and result.resource == "disk", result


# ---------------------------------------------------------------- isolation


async def test_a_level_that_fails_its_probe_is_skipped_with_a_note(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(sandbox_module, "_detected", {})
    box = Sandbox(timeout_s=5, allow_weak_isolation=True)
    iso = await box.isolation()
    assert iso.level != "bwrap" and "Creating new namespace failed" in iso.notes[0]
    assert (await box.run_tests(ADD, CHECK_ADD, "check", "add")).verdict == "pass"


async def test_each_level_says_what_its_probe_found(level_sandbox):
    iso = await level_sandbox.isolation()
    assert iso.level == level_sandbox.requested
    holds = (
        iso.unprivileged,
        iso.network_cut,
        iso.filesystem_protected,
        iso.processes_limited,
        iso.environ_hidden,
    )
    assert (iso.weaknesses == ()) == all(holds)
    if iso.level == "process":
        assert not iso.network_cut and iso.weaknesses
    if iso.level == "bwrap":
        assert iso.weaknesses == ()


async def test_network_access_fails(strict):
    if not await runs_here(strict):
        return
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = dedent(f"""\
            import socket
            def f():
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
                except OSError as err:
                    print("blocked:", err)
                    return 1
                return "connected"
            """)
        result = await strict.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "pass", result
    assert "blocked" in result.stdout


async def test_no_secret_reaches_the_code(sandbox, monkeypatch):
    canaries = {
        "OPENAI_API_KEY": "sk-canary-1",
        "HF_TOKEN": "hf_canary_2",
        "ANTHROPIC_API_KEY": "canary-3",
        "GITHUB_TOKEN": "canary-4",
    }
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)
    code = dedent("""\
        import os
        print(sorted(os.environ.items()))
        with open("/proc/self/environ", "rb") as handle:
            print(handle.read())
        def f():
            return 1
        """)
    result = await sandbox.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "pass" and "HOME" in result.stdout, result
    for name, value in canaries.items():
        assert name not in result.stdout and value not in result.stdout


async def test_writing_or_deleting_outside_the_work_dir_fails(strict, tmp_path):
    if not await runs_here(strict):
        return
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    canary = f"/tmp/collabrl-canary-{uuid.uuid4().hex}"
    code = dedent(f"""\
        import os, sys
        def attempt(action, *args):
            try:
                action(*args)
                print("done:", action.__name__, args)
            except OSError as err:
                print("refused:", action.__name__, err)
        attempt(os.remove, {str(victim)!r})
        attempt(lambda p: open(p, "w").write("owned"), {str(victim)!r})
        attempt(lambda p: open(p, "w").write("x"), {canary!r})
        attempt(lambda p: open(p, "w").write("x"), os.path.join(sys.prefix, "pwned.txt"))
        attempt(lambda p: open(p, "w").write("x"), "/etc/pwned.txt")
        def f():
            return 1
        """)
    result = await strict.run_tests(code, CHECK_ONE, "check", "f")
    assert result.verdict == "pass", result
    assert victim.read_text() == "precious"
    assert not os.path.exists(canary) and not os.path.exists("/etc/pwned.txt")
    assert not os.path.exists(os.path.join(sys.prefix, "pwned.txt"))


# ---------------------------------------------------------------- the gate


def code_task(task_id: str, tests: str, canonical: str | None, style: str = "check") -> Task:
    metadata = {"test_style": style, "entry_point": "add"}
    if canonical is not None:
        metadata["canonical_solution"] = canonical
    return Task(
        id=task_id,
        description="write a function",
        intent="Write add(a, b).",
        artifact="code",
        reference=tests,
        metadata=metadata,
    )


async def test_the_gate_passes_sound_tasks_and_lists_the_others(sandbox):
    tasks = [
        code_task("sound", CHECK_ADD, ADD),
        code_task("sound-unittest", UNITTEST_ADD, ADD, style="unittest"),
        code_task("broken-reference", CHECK_ADD, "def add(a, b):\n    return a - b\n"),
        code_task("tests-pass-anything", "def check(candidate):\n    pass\n", ADD),
        code_task("no-canonical", CHECK_ADD, None),
        code_task("broken-tests", "def check(candidate)\n", ADD),
        Task(id="prose", description="d", intent="i", artifact="document", reference="r"),
    ]
    report = await check_task_set(tasks, sandbox)
    problems = {v.task_id: v.problem for v in report.violations}
    assert problems == {
        "broken-reference": "reference_fails",
        "tests-pass-anything": "empty_passes",
        "no-canonical": "no_canonical_solution",
        "broken-tests": "sandbox_error",
        "prose": "not_code",
    }
    assert report.checked == 7 and not report.ok
    assert report.isolation == (await sandbox.isolation()).level
    assert [t.id for t in report.keep(tasks)] == ["sound", "sound-unittest"]
    with pytest.raises(GateError, match="5 of 7 code tasks fail the sandbox gate"):
        report.raise_for_violations()


async def test_the_gate_accepts_a_sound_set(sandbox):
    report = await check_task_set([code_task("a", CHECK_ADD, ADD)], sandbox)
    assert report.ok and report.violations == ()
    report.raise_for_violations()
