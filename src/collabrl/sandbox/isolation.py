"""How a sandbox run is isolated: the levels, their command lines and what each one guarantees.

Every level runs the same chain: ``sandbox_launcher.py`` (rlimits, uid drop, subreaper, cleanup)
then ``sandbox_runner.py`` (the tests, next to the code), both with ``python -I`` and an
environment built here from an allow-list (no variable of the host is passed on, so no API key
or token). Levels, best first:

``bwrap`` (Debian package ``bubblewrap``): new PID, network, IPC, UTS (and cgroup) namespaces;
  a new root holding only /usr, /lib*, /bin, a few /etc files and the Python installation, all
  read-only, a fresh /proc and /dev, the inputs read-only at /sandbox and size-limited tmpfs
  mounts as /tmp (the working directory) and /dev/shm; nothing else of the host is visible,
  nothing written survives the run.
  As root no user namespace is used: the launcher keeps only CAP_SETUID/SETGID/KILL and starts
  the runner under a per-run unprivileged uid with no capabilities (so RLIMIT_NPROC is enforced:
  it is not for root). As another user, a user namespace maps that user to 65534. Killing the
  namespace's PID 1 kills every process of the run, whatever session it started.
``unshare`` (util-linux): new network, PID and mount namespaces. As root the launcher builds the
  same new root as bwrap's itself (``sandbox_mounts.py``) and starts the runner under a per-run
  unprivileged uid, so it protects what bwrap protects. As another user it can only map that
  user to root in a user namespace: the code keeps the user's rights on the host's files, so
  this is weak.
``process``: a plain child process in its own session with the same rlimits, killed through the
  launcher (which, as a subreaper, also finds detached grandchildren) and the process group. No
  network, filesystem or /proc isolation: always weak. For development.

Which of these guarantees hold is not assumed from the tools found: ``sandbox.probe`` checks
them at start-up by running a probe at the level, and a weak level only runs with the explicit
opt-in ``sandbox.allow_weak_isolation`` (``sandbox.policy``). None of the levels filters system
calls (no seccomp) or bounds the memory of all processes of a run together (RLIMIT_AS is per
process; RLIMIT_NPROC bounds how many there are).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from collabrl.config import ConfigError

IsolationLevel = Literal["bwrap", "unshare", "process"]
LEVELS: tuple[IsolationLevel, ...] = ("bwrap", "unshare", "process")
INPUT_IN_BWRAP = "/sandbox"
WORK_IN_BWRAP = "/tmp"
UID_BASE, UID_SPAN, USERNS_UID = 64000, 1000, 65534
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "mime.types",
    "alternatives",
    "fonts",
    "ssl",
)
_uids_in_use: set[int] = set()


@dataclass(frozen=True)
class Plan:
    """How a level is set up here, decided before any probe: who runs the code, in which root."""

    level: IsolationLevel
    drops_uid: bool  # the runner gets a per-run unprivileged uid (we are root)
    new_root: bool  # the launcher builds a new root (unshare as root; bwrap does its own)


class Isolation(BaseModel):
    """The level a sandbox uses on this machine and what its start-up probe found it protects.

    ``weaknesses`` lists, one phrase each, the guarantees that do not hold (empty: strong).
    """

    model_config = ConfigDict(frozen=True)

    level: IsolationLevel
    drops_uid: bool
    new_root: bool = False
    unprivileged: bool
    network_cut: bool
    filesystem_protected: bool
    processes_limited: bool
    environ_hidden: bool
    weaknesses: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def plan(self) -> Plan:
        return Plan(self.level, self.drops_uid, self.new_root)


class SandboxUnavailable(RuntimeError):
    """No isolation level works on this machine (the message says why, level by level)."""


class SandboxRefused(ConfigError):
    """The isolation here is weak and ``sandbox.allow_weak_isolation`` is off: nothing runs."""


def refusal(iso: Isolation) -> SandboxRefused:
    """The one-line refusal for a weak ``iso``: what is weak, what was tried, the fix."""
    where = "as root" if is_root() else "where unprivileged user namespaces are allowed"
    others = [n for n in iso.notes if not n.startswith(f"{iso.level}:")]
    notes = " ".join("; ".join(others).split())  # one line, whatever a tool printed
    tried = f" (tried: {notes[:300]})" if notes else ""
    return SandboxRefused(
        f"the sandbox refuses to run model-written code: isolation level {iso.level!r} is weak "
        f"here ({'; '.join(iso.weaknesses)}){tried}. Fix: install bubblewrap (apt-get install "
        f"bubblewrap) {where} and keep isolation 'auto'; or set sandbox.allow_weak_isolation: "
        f"true to run it anyway, with those weaknesses"
    )


def is_root() -> bool:
    return os.geteuid() == 0


def world_readable(paths: list[str]) -> bool:
    """Whether a user with no rights of its own can reach and read every path in ``paths``."""
    for path in paths:
        current = "/"
        for part in os.path.realpath(path).strip("/").split("/"):
            current = os.path.join(current, part)
            try:
                mode = os.stat(current).st_mode
            except OSError:
                return False
            needed = stat.S_IXOTH | (stat.S_IROTH if current == os.path.realpath(path) else 0)
            if mode & needed != needed:
                return False
    return True


def plan(level: IsolationLevel, python_dirs: list[str]) -> Plan:
    """How ``level`` is set up here (see the module docstring); the probe checks the result."""
    root = is_root()
    new_root = root and level == "unshare"
    drops = root and (level != "process" or world_readable(python_dirs))
    return Plan(level, drops, new_root)


def tool(name: str) -> str | None:
    """The path of the program ``name``, or None (the one place programs are looked up)."""
    return shutil.which(name)


def missing_tool(level: IsolationLevel) -> str | None:
    """Why ``level`` cannot run here for lack of a program, or None."""
    if level != "process" and tool(level) is None:
        package = {"bwrap": "bubblewrap", "unshare": "util-linux"}[level]
        return f"{level}: program not found (Debian package {package})"
    return None


def allocate_uid() -> int:
    """A uid no other run of this process uses now, so runs do not share a process count."""
    uid = next(u for u in range(UID_BASE, UID_BASE + UID_SPAN) if u not in _uids_in_use)
    _uids_in_use.add(uid)
    return uid


def release_uid(uid: int | None) -> None:
    _uids_in_use.discard(uid)


@dataclass(frozen=True)
class Command:
    """How to start one run: the argv, its working directory, and the paths the inside sees."""

    argv: list[str]
    cwd: str
    input_dir: str
    work_dir: str


def command(
    plan: Plan,
    *,
    python: str,
    input_host: str,
    work_host: str,
    python_dirs: list[str],
    disk_mb: int,
) -> Command:
    """How to start the launcher of one run under ``plan`` (with a new root, the launcher starts
    on the host's paths and the runner sees the inside ones: /sandbox and /tmp)."""
    launch_from = input_host
    if plan.level == "bwrap":
        prefix = [tool("bwrap"), *bwrap_options(python_dirs, input_host, disk_mb), "--"]
        input_dir, work_dir, cwd = INPUT_IN_BWRAP, WORK_IN_BWRAP, "/"
        launch_from = INPUT_IN_BWRAP
    elif plan.level == "unshare":
        userns = [] if is_root() else ["--user", "--map-root-user"]
        prefix = [
            tool("unshare"),
            *userns,
            "--net",
            "--pid",
            "--mount",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
        ]
        inside = (INPUT_IN_BWRAP, WORK_IN_BWRAP) if plan.new_root else (input_host, work_host)
        input_dir, work_dir, cwd = *inside, work_host
    else:
        prefix, input_dir, work_dir, cwd = [], input_host, work_host, work_host
    launch = [python, "-I", f"{launch_from}/sandbox_launcher.py", f"{launch_from}/config.json"]
    return Command(prefix + launch, cwd, input_dir, work_dir)


def new_root_spec(python_dirs: list[str], input_host: str, root_host: str, disk_mb: int) -> dict:
    """What ``sandbox_mounts.enter`` builds: the same root as bwrap's."""
    binds, symlinks = layout(python_dirs)
    return {
        "root": root_host,
        "binds": binds,
        "symlinks": symlinks,
        "input": input_host,
        "input_at": INPUT_IN_BWRAP,
        "work_at": WORK_IN_BWRAP,
        "size": int(disk_mb) << 20,
    }


def layout(python_dirs: list[str]) -> tuple[list[str], list[list[str]]]:
    """The host paths a new root binds read-only, and its symlinks as ``[path, target]``."""
    binds, symlinks = [], []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            symlinks.append([path, os.readlink(path)])
        elif os.path.isdir(path):
            binds.append(path)
    binds += [p for p in (f"/etc/{name}" for name in _ETC_FILES) if os.path.exists(p)]
    binds += _outermost(p for p in python_dirs if not any(_under(p, b) for b in binds))
    return binds, symlinks


def bwrap_options(python_dirs: list[str], input_host: str, disk_mb: int) -> list[str]:
    opts = [
        "--die-with-parent",
        "--new-session",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
    ]
    if is_root():
        opts += ["--cap-drop", "ALL"]
        opts += [a for cap in ("SETUID", "SETGID", "KILL") for a in ("--cap-add", f"CAP_{cap}")]
    else:
        opts += ["--unshare-user", "--uid", str(USERNS_UID), "--gid", str(USERNS_UID)]
    size = str(int(disk_mb) << 20)
    opts += ["--proc", "/proc", "--dev", "/dev"]
    for tmpfs in (WORK_IN_BWRAP, "/dev/shm"):  # /dev/shm: multiprocessing's semaphores
        opts += ["--size", size, "--perms", "1777", "--tmpfs", tmpfs]
    binds, symlinks = layout(python_dirs)
    for path, target in symlinks:
        opts += ["--symlink", target, path]
    for path in binds:
        opts += ["--ro-bind", path, path]
    opts += ["--ro-bind", input_host, INPUT_IN_BWRAP]
    for parent in _created_parents([*binds, INPUT_IN_BWRAP]):
        opts += ["--chmod", "0755", parent]  # bwrap creates them 0700: the runner's uid must pass
    return [*opts, "--chdir", WORK_IN_BWRAP]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(paths) -> list[str]:
    unique = sorted(set(map(os.path.realpath, paths)))
    return [p for p in unique if not any(p != q and _under(p, q) for q in unique)]


def _created_parents(binds: list[str]) -> list[str]:
    """Directories bwrap creates on the way to ``binds`` (all ancestors not bound themselves)."""
    parents = set()
    for path in binds:
        while (path := os.path.dirname(path)) != "/":
            parents.add(path)
    return sorted(p for p in parents if p != WORK_IN_BWRAP and not any(_under(p, b) for b in binds))


async def python_dirs(python: str) -> list[str]:
    """The directories the interpreter needs (bound read-only into bwrap)."""
    script = (
        "import sys; print('\\n'.join({sys.prefix, sys.base_prefix, sys.exec_prefix,"
        " sys.base_exec_prefix}))"
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            python,
            "-I",
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=sandbox_env("/"),
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxUnavailable(f"python {python!r} does not start: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError as exc:
        proc.kill()
        raise SandboxUnavailable(f"python {python!r} did not answer within 60 s") from exc
    if proc.returncode != 0:
        raise SandboxUnavailable(f"python {python!r} failed: {err.decode(errors='replace')[-300:]}")
    return [*out.decode().splitlines(), os.path.dirname(os.path.realpath(python))]


def sandbox_env(work_dir: str) -> dict[str, str]:
    """The whole environment of a run: an allow-list built here, nothing copied from the host."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": work_dir,
        "TMPDIR": work_dir,
        "MPLCONFIGDIR": work_dir,
        "MPLBACKEND": "Agg",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per thread arena
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
