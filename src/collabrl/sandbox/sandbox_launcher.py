"""The first process inside the sandbox: confine the test runner, wait for it, leave nothing behind.

Standard library only; copied into the sandbox's input folder and run as
``python -I sandbox_launcher.py config.json`` (directly, or under bwrap / unshare). It

1. becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every process the code starts,
   even one that double-forks into a new session, is re-parented to the launcher, not to init;
2. when the config asks for a ``new_root`` (``unshare`` as root), builds it and chroots into it
   (``sandbox_mounts.py``);
3. reads the host's nonce from stdin and starts ``sandbox_runner.py`` in a fresh interpreter,
   handing it the nonce on its stdin, with the resource limits of the config (address space,
   CPU seconds, file size, open files, processes, no core dumps) and, when the host runs as root,
   under an unprivileged uid/gid (as root ``RLIMIT_NPROC`` is not enforced);
4. waits for it, then kills and reaps every process left (they are all its children by then),
   reports how many it had to kill (a ``reaped`` record with the nonce on the result pipe: a run
   that leaves half its process allowance behind ran into the process limit), and exits with
   the runner's exit code, or 128 + the signal that killed it.

SIGTERM (the host's timeout in the "process" isolation level) stops the wait and goes straight
to step 4. In the namespace levels the kernel does the same on a larger scale: the launcher is
(or is the only child of) PID 1 of the sandbox's PID namespace, so once it is gone, so is
everything else. The launcher itself has no limits and never runs untrusted code.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
LIMITS = {
    "memory_bytes": resource.RLIMIT_AS,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
}


class Stop(Exception):
    """SIGTERM: stop waiting and clean up."""


def _on_sigterm(signum, frame):
    raise Stop


def confine(limits: dict) -> None:
    """In the runner's process, before exec: the resource limits (uid/gid come from Popen)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    for key, which in LIMITS.items():
        resource.setrlimit(which, (limits[key], limits[key]))


def children(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (from /proc, which matches our PID namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # the process is gone
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == parent:
            found.append(int(entry))
    return found


def reap_all() -> int:
    """Kill and reap every descendant; orphans keep arriving until the last one is gone.
    Returns how many processes had to be killed."""
    me, killed = os.getpid(), set()
    while True:
        for pid in children(me):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        try:
            reaped, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return len(killed)
        if reaped == 0:
            time.sleep(0.01)


def report(fd: int, nonce: str, kind: str, **payload: object) -> None:
    line = (json.dumps({"nonce": nonce, "kind": kind, **payload}) + "\n").encode()
    with contextlib.suppress(OSError):
        os.write(fd, line)


def start_runner(config: dict, nonce: str) -> subprocess.Popen:
    drop = (
        {}
        if config["uid"] is None
        else {"user": config["uid"], "group": config["gid"], "extra_groups": []}
    )
    runner = subprocess.Popen(
        [config["python"], "-I", config["runner"], config["config"]],
        stdin=subprocess.PIPE,
        cwd=config["work"],
        pass_fds=(config["result_fd"],),
        preexec_fn=lambda: confine(config["limits"]),
        **drop,
    )
    with contextlib.suppress(OSError):
        runner.stdin.write(nonce.encode() + b"\n")
        runner.stdin.close()
    return runner


def exit_code(status: int | None) -> int:
    if status is None:
        return 128 + signal.SIGTERM
    return status if status >= 0 else 128 - status


def main(config_path: str) -> int:
    with open(config_path) as handle:
        config = json.load(handle)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("sandbox launcher: cannot become a subreaper", file=sys.stderr)
        return 125
    nonce = sys.stdin.readline().strip()
    signal.signal(signal.SIGTERM, _on_sigterm)
    status, left = None, 0
    try:
        if config.get("new_root"):
            _mounts().enter(config["new_root"])
        status = start_runner(config, nonce).wait()
    except Stop:
        pass
    except (OSError, subprocess.SubprocessError) as err:
        print(f"sandbox launcher: cannot start the runner: {err}", file=sys.stderr)
        return 125
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = reap_all()
    report(config["result_fd"], nonce, "reaped", count=left)
    return exit_code(status)


def _mounts():
    """``sandbox_mounts``, which lies next to this file (``-I`` keeps this folder off the path)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import sandbox_mounts
    finally:
        sys.path.pop(0)
    return sandbox_mounts


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
