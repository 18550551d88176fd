"""Attacks on the host by model-written code, run in a ``Sandbox``: what issue 12 found, as cases.

Shared by the tests that run as root and by the run as an unprivileged user:
``python tests/sandbox_attacks.py [--no-bwrap] [--allow-weak] [--isolation LEVEL]`` prints one
JSON line with the outcome (it is started as ``nobody`` by ``test_sandbox_isolation.py``).

The code under test tries every case below and prints which succeeded; the host then checks its
files itself (alone for the host's /tmp, which the code cannot tell from a private /tmp), so a
case counts as blocked only if both agree. A sandbox that refuses to run (``SandboxRefused``)
or has no level that works here (``SandboxUnavailable``) blocks every case by running nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from textwrap import dedent

CASES = (
    "delete_outside",
    "overwrite_outside",
    "create_in_host_tmp",
    "write_python_install",
    "processes_over_limit",
    "read_other_environ",
    "network",
)
CHECK_ONE = "def check(candidate):\n    assert candidate() == 1\n"
MAX_PROCESSES = 32


def attack_code(victim_dir: str, canary: str, marker: str, secret: str, port: int) -> str:
    return dedent(f"""\
        import json, os, socket, sys
        leaks = []
        def attempt(case, action):
            try:
                if action() is not False:
                    leaks.append(case)
            except Exception:
                pass
        def write(path, mode):
            with open(path, mode) as handle:
                handle.write("owned")
        def fork_many():
            read, write_end = os.pipe()
            kids = []
            try:
                for _ in range({MAX_PROCESSES + 16}):
                    pid = os.fork()
                    if pid == 0:
                        os.close(write_end)
                        os.read(read, 1)
                        os._exit(0)
                    kids.append(pid)
            except OSError:
                pass
            finally:
                os.close(write_end)
                for pid in kids:
                    os.waitpid(pid, 0)
                os.close(read)
            return len(kids) > {MAX_PROCESSES}
        def environ():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{{pid}}/environ", "rb") as handle:
                        if {secret!r}.encode() in handle.read():
                            return True
                except OSError:
                    pass
            return False
        attempt("delete_outside", lambda: os.remove(os.path.join({victim_dir!r}, "delete-me")))
        attempt("overwrite_outside", lambda: write(os.path.join({victim_dir!r}, "keep-me"), "w"))
        try:  # the sandbox's /tmp may be its own: only the host can tell
            write({canary!r}, "x")
        except OSError:
            pass
        attempt("write_python_install", lambda: write(os.path.join(sys.base_prefix, {marker!r}), "x"))
        attempt("processes_over_limit", fork_many)
        attempt("read_other_environ", environ)
        attempt("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1).close())
        print("LEAKS", json.dumps(leaks))
        def f():
            return 1
        """)


@contextlib.contextmanager
def bystander(secret: str):
    """Another process of the host whose environment holds an API key."""
    proc = subprocess.Popen(["sleep", "120"], env={"OPENAI_API_KEY": secret})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def host_leaks(victim: Path, canary: Path, installed: list[Path]) -> set[str]:
    """What the host sees changed, whatever the code says."""
    found = set()
    if not (victim / "delete-me").exists():
        found.add("delete_outside")
    if (victim / "keep-me").read_text() != "precious":
        found.add("overwrite_outside")
    if canary.exists():
        found.add("create_in_host_tmp")
    if any(p.exists() for p in installed):
        found.add("write_python_install")
    return found


async def attack(sandbox) -> dict:
    """Run every case in ``sandbox``; the outcome as a JSON-able dict."""
    from collabrl.sandbox import SandboxRefused, SandboxUnavailable

    try:
        iso = await sandbox.isolation()
    except SandboxRefused as refusal:
        return {"refused": str(refusal), "tried": list(CASES), "leaks": []}
    except SandboxUnavailable as unavailable:  # e.g. bwrap asked for and not installed
        return {"refused": None, "unavailable": str(unavailable), "tried": list(CASES), "leaks": []}
    token = secrets.token_hex(8)
    canary = Path(tempfile.gettempdir()) / f"collabrl-canary-{token}"
    installed = [Path(p) / f"collabrl-pwned-{token}" for p in {sys.base_prefix, sys.prefix}]
    with (
        tempfile.TemporaryDirectory() as tmp,
        socket.socket() as server,
        bystander(f"sk-canary-{token}"),
    ):
        Path(tmp).chmod(0o755)
        victim = Path(tmp) / "victim"
        victim.mkdir(mode=0o777)
        victim.chmod(0o777)
        for name in ("delete-me", "keep-me"):
            (victim / name).write_text("precious")
            (victim / name).chmod(0o666)
        server.bind(("127.0.0.1", 0))
        server.listen()
        code = attack_code(
            str(victim),
            str(canary),
            installed[0].name,
            f"sk-canary-{token}",
            server.getsockname()[1],
        )
        try:
            result = await sandbox.run_tests(code, CHECK_ONE, "check", "f")
            reported = next(
                (
                    json.loads(line[6:])
                    for line in result.stdout.splitlines()
                    if line.startswith("LEAKS ")
                ),
                None,
            )
            leaks = host_leaks(victim, canary, installed)
        finally:
            for path in (canary, *installed):
                path.unlink(missing_ok=True)
    return {
        "refused": None,
        "level": iso.level,
        "weak": bool(iso.weaknesses),
        "verdict": result.verdict,
        "reported": reported,
        "tried": list(CASES),
        "leaks": sorted(leaks | set(reported or ())),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-bwrap", action="store_true", help="hide bubblewrap from the sandbox")
    parser.add_argument("--allow-weak", action="store_true")
    parser.add_argument("--isolation", default="auto")
    args = parser.parse_args()
    from collabrl.sandbox import Sandbox, isolation

    if args.no_bwrap:
        found = isolation.tool
        isolation.tool = lambda name: None if name == "bwrap" else found(name)
    sandbox = Sandbox(
        timeout_s=20,
        max_processes=MAX_PROCESSES,
        isolation=args.isolation,
        allow_weak_isolation=args.allow_weak,
    )
    outcome = asyncio.run(attack(sandbox))
    print(json.dumps({"uid": os.geteuid(), **outcome}))


if __name__ == "__main__":
    main()
