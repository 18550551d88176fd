"""Run untrusted, model-written code against unit tests, safely, and say how it went.

The pass-rate metric (``metrics/pass_rate.py``) and the task-set gate (``sandbox/gate.py``) use
it. Python-level guards are not a sandbox, so each run is layered:

1. a fresh interpreter (``python -I``) started with ``asyncio.create_subprocess_exec`` (never a
   fork of this process, never a thread pool), an environment built from an allow-list (no API
   key or token of the host), every other file descriptor closed, a new session, a fresh
   temporary directory;
2. resource limits in the child: address space, CPU seconds, file size, open files, processes
   (under an unprivileged uid when we are root), no core dumps, and a wall-clock timeout after
   which the whole process tree is killed;
3. namespaces: bubblewrap, else ``unshare``, else none. At first use a probe run at each level
   checks what it really protects here (``sandbox/probe.py``): the best level that works and
   holds is used; a weak one (root, host files writable, network, no process limit, /proc
   readable) is refused with ``SandboxRefused`` before any code runs, unless the sandbox was
   made with ``allow_weak_isolation=True``. The level, and whether it is weak, is in every
   result; ``sandbox/isolation.py`` says what each level protects.

Inside, ``sandbox_launcher.py`` applies the limits and reaps every leftover process, and
``sandbox_runner.py`` (with ``sandbox_guards.py``) runs the tests next to the code and reports
on a private pipe with a nonce the code does not know, so printing "OK", exiting early,
always-equal objects or patching unittest do not pass.

Verdicts: ``pass``: our runner exited cleanly after running exactly the expected tests, all
passed. ``fail``: anything else the code is answerable for (failed tests, a syntax error, an
exit before the report). ``timeout``: the wall-clock limit passed. ``resource_exceeded``: a
memory, CPU, file-size, disk, open-file or process limit was hit (``resource`` says which), the
output went over ``output_limit`` ("output"), or the run left at least half its process
allowance running ("processes": it ran into the limit even if its tests passed). ``error``:
the sandbox itself failed (it could not start, the tests could not be loaded): not the code's
fault, so metrics leave it unscored. ``pass_rate`` is passed/expected for pass and fail, 0 for
timeout and resource_exceeded, None for error. ``sandbox/verdict.py`` judges them.

Use: ``result = await Sandbox(timeout_s=10).run_tests(code, tests, "check", "entry_point")``;
``await sandbox.isolation()`` says which level runs here and what it protects (or raises
``SandboxRefused``). Linux only.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Literal

from collabrl.sandbox.isolation import (
    LEVELS,
    Command,
    Isolation,
    IsolationLevel,
    Plan,
    SandboxUnavailable,
    allocate_uid,
    command,
    missing_tool,
    new_root_spec,
    plan,
    python_dirs,
    refusal,
    release_uid,
    sandbox_env,
)
from collabrl.sandbox.probe import PROBE_TESTS, ProbeFailed, probe
from collabrl.sandbox.sandbox_launcher import children
from collabrl.sandbox.verdict import Capture, Limits, Raw, SandboxResult, judge

TestStyle = Literal["check", "unittest"]
_IN_SANDBOX = ("sandbox_launcher.py", "sandbox_runner.py", "sandbox_guards.py", "sandbox_mounts.py")
_RESULT_LIMIT = 1 << 20
_GRACE_S = 2.0
_detected: dict[tuple[str, str], tuple[Isolation, list[str]]] = {}


class Sandbox:
    """Runs code against tests; at most ``concurrency`` runs at once (default: CPU count).

    ``isolation``: "auto" (best level that works here), or one of "bwrap", "unshare",
    "process" (runs then fail with verdict error if that level does not work). A level found
    weak is refused (``SandboxRefused``) unless ``allow_weak_isolation``. ``python``: the
    interpreter inside the sandbox (default: this one), with the libraries the tests need.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        file_size_mb: int = 64,
        disk_mb: int = 256,
        max_processes: int = 64,
        max_open_files: int = 256,
        output_limit: int = 32_000,
        concurrency: int | None = None,
        isolation: Literal["auto"] | IsolationLevel = "auto",
        python: str | None = None,
        allow_weak_isolation: bool = False,
    ) -> None:
        if isolation != "auto" and isolation not in LEVELS:
            raise ValueError(f"isolation must be 'auto' or one of {LEVELS}, not {isolation!r}")
        if min(timeout_s, memory_mb, file_size_mb, disk_mb, max_processes, max_open_files) <= 0:
            raise ValueError("sandbox limits must be positive")
        self.timeout_s, self.memory_mb, self.file_size_mb = timeout_s, memory_mb, file_size_mb
        self.disk_mb, self.max_processes, self.max_open_files = (
            disk_mb,
            max_processes,
            max_open_files,
        )
        self.output_limit, self.requested = output_limit, isolation
        self.allow_weak_isolation = allow_weak_isolation
        self.concurrency = concurrency or os.cpu_count() or 1
        self.python = python or sys.executable
        self._loop: asyncio.AbstractEventLoop | None = None

    def _loop_state(self) -> tuple[asyncio.Semaphore, asyncio.Lock]:
        """Semaphore and lock of the running loop (a sandbox may outlive an event loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._slots, self._lock = (
                loop,
                asyncio.Semaphore(self.concurrency),
                asyncio.Lock(),
            )
        return self._slots, self._lock

    async def isolation(self) -> Isolation:
        """The level runs use here, probed once per process; raises SandboxUnavailable when no
        level works, SandboxRefused when the one that does is weak and not opted into."""
        iso = (await self._detected())[0]
        if iso.weaknesses and not self.allow_weak_isolation:
            raise refusal(iso)
        return iso

    async def _detected(self) -> tuple[Isolation, list[str]]:
        key = (self.requested, self.python)
        if key not in _detected:
            async with self._loop_state()[1]:
                if key not in _detected:
                    _detected[key] = await self._detect()
        return _detected[key]

    async def _detect(self) -> tuple[Isolation, list[str]]:
        """The first level, best first, that works here and is strong; else the first that works
        (weak: ``isolation()`` refuses it unless opted into); else SandboxUnavailable."""
        dirs = await python_dirs(self.python)
        notes: list[str] = []
        weak: Isolation | None = None
        for level in LEVELS if self.requested == "auto" else (self.requested,):
            missing = missing_tool(level)
            if missing:
                notes.append(missing)
                continue
            how = plan(level, dirs)
            try:
                iso = await probe(
                    how,
                    dirs,
                    lambda code, p=how: self._run(
                        p,
                        dirs,
                        {
                            "code": code,
                            "tests": PROBE_TESTS,
                            "style": "check",
                            "entry_point": "probe",
                            "setup": None,
                        },
                    ),
                    tuple(notes),
                )
            except ProbeFailed as failed:
                notes.append(f"{level}: {failed}")
                continue
            if not iso.weaknesses:
                return iso, dirs
            notes.append(f"{level}: weak ({', '.join(iso.weaknesses)})")
            weak = weak or iso
        if weak is not None:
            return weak.model_copy(update={"notes": tuple(notes)}), dirs
        raise SandboxUnavailable("; ".join(notes))

    async def run_tests(
        self,
        code: str,
        tests: str,
        test_style: TestStyle,
        entry_point: str | None = None,
        setup_code: str | None = None,
    ) -> SandboxResult:
        """Run ``tests`` against ``code`` (``setup_code`` is prepended to it)."""
        if test_style not in ("check", "unittest"):
            raise ValueError(f"test_style must be 'check' or 'unittest', not {test_style!r}")
        if test_style == "check" and not entry_point:
            raise ValueError("check-style tests need the entry point's name")
        try:
            iso = await self.isolation()
        except SandboxUnavailable as err:
            return SandboxResult(
                verdict="error",
                isolation="none",
                duration_s=0.0,
                reason=f"no isolation level works: {err}",
            )
        task = {
            "code": code,
            "tests": tests,
            "style": test_style,
            "entry_point": entry_point,
            "setup": setup_code,
        }
        async with self._loop_state()[0]:
            result = await self._run(iso.plan, (await self._detected())[1], task)
        return result.model_copy(update={"weak_isolation": bool(iso.weaknesses)})

    async def _run(self, how: Plan, python_dirs: list[str], task: dict) -> SandboxResult:
        """One run of ``task`` (code, tests, style, entry_point, setup) as ``how`` says."""
        started = time.monotonic()
        uid = allocate_uid() if how.drops_uid else None
        try:
            with tempfile.TemporaryDirectory(
                prefix="collabrl-sandbox-", ignore_cleanup_errors=True
            ) as tmp:
                read_fd, write_fd = os.pipe()
                try:
                    cmd = self._prepare(Path(tmp), how, python_dirs, uid, write_fd, task)
                except OSError:
                    os.close(read_fd)
                    os.close(write_fd)
                    raise
                raw = await _execute(
                    cmd, how.level, read_fd, write_fd, self.timeout_s, self.output_limit
                )
        except OSError as err:
            return SandboxResult(
                verdict="error",
                isolation=how.level,
                duration_s=time.monotonic() - started,
                reason=f"sandbox setup failed: {err}",
            )
        finally:
            release_uid(uid)
        limits = Limits(self.timeout_s, self.output_limit, self.max_processes)
        return judge(raw, how.level, time.monotonic() - started, limits)

    def _prepare(
        self,
        tmp: Path,
        how: Plan,
        python_dirs: list[str],
        uid: int | None,
        result_fd: int,
        task: dict,
    ) -> Command:
        """Write the inputs (read-only for the code) and the config; the command to start."""
        input_host, work_host, root_host = tmp / "input", tmp / "work", tmp / "root"
        input_host.mkdir(mode=0o755)
        work_host.mkdir(mode=0o700)
        root_host.mkdir(mode=0o755)
        tmp.chmod(0o711)
        if uid is not None and how.level == "process":
            os.chown(work_host, uid, uid)
        for name in _IN_SANDBOX:
            shutil.copyfile(Path(__file__).with_name(name), input_host / name)
        setup = task["setup"] or ""
        files = {
            "candidate.py": f"{setup}\n{task['code']}",
            "tests.py": task["tests"],
            "setup.py": setup,
        }
        for name, text in files.items():
            (input_host / name).write_text(text, encoding="utf-8")
        cmd = command(
            how,
            python=self.python,
            input_host=str(input_host),
            work_host=str(work_host),
            python_dirs=python_dirs,
            disk_mb=self.disk_mb,
        )
        new_root = new_root_spec(python_dirs, str(input_host), str(root_host), self.disk_mb)
        limits = {
            "cpu_s": math.ceil(self.timeout_s) + 1,
            "memory_bytes": int(self.memory_mb) << 20,
            "file_size_bytes": int(self.file_size_mb) << 20,
            "open_files": int(self.max_open_files),
            "processes": int(self.max_processes),
        }
        config = {
            "python": self.python,
            "runner": f"{cmd.input_dir}/sandbox_runner.py",
            "config": f"{cmd.input_dir}/config.json",
            "new_root": new_root if how.new_root else None,
            "work": cmd.work_dir,
            "result_fd": result_fd,
            "uid": uid,
            "gid": uid,
            "limits": limits,
            "test_style": task["style"],
            "entry_point": task["entry_point"],
            "candidate": f"{cmd.input_dir}/candidate.py",
            "tests": f"{cmd.input_dir}/tests.py",
            "setup": f"{cmd.input_dir}/setup.py" if task["setup"] else None,
        }
        (input_host / "config.json").write_text(json.dumps(config), encoding="utf-8")
        for path in input_host.iterdir():
            path.chmod(0o644)
        return cmd


async def _execute(
    cmd: Command, level: str, read_fd: int, write_fd: int, timeout_s: float, output_limit: int
) -> Raw:
    """Start ``cmd``, hand it the nonce, collect output and records, kill it on timeout.

    Owns both ends of the result pipe (``write_fd`` is passed to the child, then closed here).
    """
    nonce = secrets.token_hex(16)
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd.argv,
            cwd=cmd.cwd,
            env=sandbox_env(cmd.work_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    out, err, res = Capture(output_limit), Capture(output_limit), Capture(_RESULT_LIMIT)
    results, transport, drains, timed_out = asyncio.StreamReader(), None, [], False
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(results), os.fdopen(read_fd, "rb", 0)
        )
        drains = [
            asyncio.ensure_future(c.drain(s))
            for c, s in ((out, proc.stdout), (err, proc.stderr), (res, results))
        ]
        with suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(nonce.encode() + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            timed_out = True
            await _stop(proc, level)
        await asyncio.wait(drains, timeout=_GRACE_S)
    finally:
        if proc.returncode is None:  # cancelled or failed: kill without waiting
            _kill_now(proc, level)
            asyncio.get_running_loop().call_later(_GRACE_S, _killpg, proc.pid)
        for task in drains:
            task.cancel()
        if transport is not None:
            transport.close()
    records = [r for r in map(_record, bytes(res.data).splitlines()) if r.get("nonce") == nonce]
    return Raw(proc.returncode, timed_out, out, err, records)


def _record(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kill_now(proc: asyncio.subprocess.Process, level: str) -> None:
    """Start killing the run's processes: the namespace's PID 1, or the launcher's cleanup."""
    if level == "process":
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        return
    for pid in children(proc.pid):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _killpg(proc.pid)


def _killpg(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _stop(proc: asyncio.subprocess.Process, level: str) -> None:
    """Kill the run and wait until it is gone: bwrap and unshare only exit once the whole PID
    namespace is empty; in the process level the launcher kills what it finds first."""
    _kill_now(proc, level)
    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(proc.wait(), _GRACE_S)
    _killpg(proc.pid)
    await proc.wait()
