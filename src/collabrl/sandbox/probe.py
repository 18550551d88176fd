"""The start-up probe: what an isolation level really protects on this machine, found by trying.

Tools being installed says little (bwrap may lack user namespaces, unshare as root may keep the
runner root, an interpreter under a private home may block the uid drop), so before a level runs
any model-written code, ``probe`` runs a tiny program through the whole chain at that level, as
model code would run, and checks from inside and from the host:

* ``unprivileged``: the code does not run as uid 0 (RLIMIT_NPROC and file permissions hold);
* ``filesystem_protected``: it cannot write a host file that anyone may write, the host's /tmp
  or the Python installation (the host checks its files afterwards too; whether a file in /tmp
  reached the host's /tmp only the host can tell, since the sandbox's /tmp may be its own);
* ``network_cut``: it cannot connect to a port the host listens on (loopback);
* ``processes_limited``: a lowered RLIMIT_NPROC stops its forks;
* ``environ_hidden``: it cannot read the environment of the host's own process through /proc.

Each guarantee that does not hold becomes one phrase of ``Isolation.weaknesses``; a level with
none is strong. A probe that does not pass at all means the level does not work here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from textwrap import dedent

from collabrl.sandbox.isolation import Isolation, Plan

PROBE_TESTS = "def check(candidate):\n    assert candidate() == 1\n"
_MARK = "COLLABRL-PROBE "
_WEAKNESSES = {
    "unprivileged": "the code runs as root",
    "filesystem_protected": "the code can write the host's files",
    "network_cut": "the code reaches the network",
    "processes_limited": "the process limit is not enforced",
    "environ_hidden": "the code can read other processes' environment (API keys) in /proc",
}

RunProbe = Callable[[str], Awaitable["object"]]


class ProbeFailed(RuntimeError):
    """The probe did not pass: the level does not work here (the message says how it ended)."""


def probe_code(victim: str, canary: str, marker: str, port: int, host_pid: int) -> str:
    return dedent(f"""\
        import hashlib, json, os, resource, socket, sys
        def attempt(action):
            try:
                action()
                return True
            except Exception:
                return False
        def create(path):
            with open(path, "x") as handle:
                handle.write("probe")
        def host_environ():
            with open("/proc/{host_pid}/environ", "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()
        def forks_stopped():
            resource.setrlimit(resource.RLIMIT_NPROC, (4, 4))
            kids = []
            try:
                for _ in range(12):
                    pid = os.fork()
                    if pid == 0:
                        os._exit(0)
                    kids.append(pid)
                return False
            except OSError:
                return True
            finally:
                for pid in kids:
                    os.waitpid(pid, 0)
        facts = {{
            "uid": os.geteuid(),
            "writes": [attempt(lambda: open({victim!r}, "a").close()),
                       *(attempt(lambda: create(os.path.join(p, {marker!r})))
                         for p in {{sys.prefix, sys.base_prefix}})],
            "host_tmp": attempt(lambda: create({canary!r})),  # the host checks: /tmp may be private
            "network": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), 2).close()),
            "environ": attempt(host_environ) and host_environ(),
            "forks_stopped": forks_stopped(),
        }}
        print({_MARK!r} + json.dumps(facts))
        def probe():
            return 1
        """)


async def probe(
    plan: Plan, python_dirs: list[str], run: RunProbe, notes: tuple[str, ...]
) -> Isolation:
    """What ``plan`` protects here; ``run(code)`` runs code against ``PROBE_TESTS`` at the level."""
    token = secrets.token_hex(8)
    canary = Path(tempfile.gettempdir()) / f"collabrl-probe-{token}"
    marker = f"collabrl-probe-{token}"
    installed = [Path(d) / marker for d in python_dirs]
    with tempfile.TemporaryDirectory(prefix="collabrl-probe-") as tmp, socket.socket() as server:
        Path(tmp).chmod(0o755)
        victim = Path(tmp) / "anyone-may-write"
        victim.write_text("probe")
        victim.chmod(0o666)
        server.bind(("127.0.0.1", 0))
        server.listen()
        code = probe_code(str(victim), str(canary), marker, server.getsockname()[1], os.getpid())
        try:
            result = await run(code)
            touched = (
                victim.read_text() != "probe"
                or canary.exists()
                or any(p.exists() for p in installed)
            )
        finally:
            for path in (canary, *installed):
                path.unlink(missing_ok=True)
    facts = _facts(result)
    guarantees = {
        "unprivileged": facts["uid"] != 0,
        "filesystem_protected": not (touched or any(facts["writes"])),
        "network_cut": not facts["network"],
        "processes_limited": facts["forks_stopped"],
        "environ_hidden": facts["environ"] != _own_environ(),
    }
    weak = tuple(_WEAKNESSES[k] for k, holds in guarantees.items() if not holds)
    return Isolation(
        level=plan.level,
        drops_uid=plan.drops_uid,
        new_root=plan.new_root,
        weaknesses=weak,
        notes=notes,
        **guarantees,
    )


def _facts(result) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith(_MARK)]
    if result.verdict != "pass" or len(lines) != 1:
        raise ProbeFailed(f"{result.verdict}: {result.reason or 'the probe reported nothing'}")
    return json.loads(lines[0][len(_MARK) :])


def _own_environ() -> str:
    with open("/proc/self/environ", "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
