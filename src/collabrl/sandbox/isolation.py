"""How a sandbox run is isolated: the levels, their command lines and what each one guarantees.

Every level runs the same chain: ``sandbox_launcher.py`` (rlimits, uid drop, subreaper, cleanup)
then ``sandbox_runner.py`` (the tests, next to the code), both with ``python -I`` and an
environment built here from an allow-list (no variable of the host is passed on, so no API key
or token). ``collabrl.sandbox`` picks the level (``"auto"``: the first that runs a known-good
probe here) and records it in every result. Levels, best first:

``bwrap`` (Debian package ``bubblewrap``): new PID, network, IPC, UTS (and cgroup) namespaces;
  a new root holding only /usr, /lib*, /bin, a few /etc files and the Python installation, all
  read-only, a fresh /proc and /dev, the inputs read-only at /sandbox and size-limited tmpfs
  mounts as /tmp (the working directory) and /dev/shm; nothing else of the host is visible,
  nothing written survives the run.
  As root no user namespace is used: the launcher keeps only CAP_SETUID/SETGID/KILL and starts
  the runner under a per-run unprivileged uid with no capabilities (so RLIMIT_NPROC is enforced:
  it is not for root). As another user, a user namespace maps that user to 65534. Killing the
  namespace's PID 1 kills every process of the run, whatever session it started.
``unshare`` (util-linux): new network, PID and mount namespaces with a fresh /proc; as root
  without a user namespace, otherwise mapped to root inside one. The network is cut and the kill
  is reliable, but the filesystem is the host's: the code reads and writes what its uid may. As
  root the runner drops to an unprivileged uid only if the Python installation is readable by
  all; otherwise it stays root and RLIMIT_NPROC is not enforced.
``process``: a plain child process in its own session with the same rlimits, killed through the
  launcher (which, as a subreaper, also finds detached grandchildren) and the process group. No
  network or filesystem isolation, and the same uid caveat as ``unshare``. For development.

None of the levels filters system calls (no seccomp) or bounds the memory of all processes of a
run together (RLIMIT_AS is per process; RLIMIT_NPROC bounds how many there are).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

IsolationLevel = Literal["bwrap", "unshare", "process"]
LEVELS: tuple[IsolationLevel, ...] = ("bwrap", "unshare", "process")
INPUT_IN_BWRAP = "/sandbox"
WORK_IN_BWRAP = "/tmp"
UID_BASE, UID_SPAN, USERNS_UID = 64000, 1000, 65534
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd",
              "group", "nsswitch.conf", "hosts", "mime.types", "alternatives", "fonts", "ssl")
_uids_in_use: set[int] = set()


class Isolation(BaseModel):
    """The level a sandbox uses on this machine and what it protects."""

    model_config = ConfigDict(frozen=True)

    level: IsolationLevel
    drops_uid: bool
    network_cut: bool
    filesystem_protected: bool
    processes_limited: bool
    notes: tuple[str, ...] = ()


class SandboxUnavailable(RuntimeError):
    """No isolation level works on this machine (the message says why, level by level)."""


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


def describe(level: IsolationLevel, python_dirs: list[str], notes: tuple[str, ...]) -> Isolation:
    """What ``level`` gives on this machine, for this interpreter (see the module docstring)."""
    root = is_root()
    drops = root and (level == "bwrap" or world_readable(python_dirs))
    return Isolation(
        level=level, drops_uid=drops, network_cut=level != "process",
        filesystem_protected=level == "bwrap",
        processes_limited=drops or not root, notes=notes,
    )


def missing_tool(level: IsolationLevel) -> str | None:
    """Why ``level`` cannot run here for lack of a program, or None."""
    if level != "process" and shutil.which(level) is None:
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


def command(iso: Isolation, *, python: str, input_host: str, work_host: str,
            python_dirs: list[str], disk_mb: int) -> Command:
    """How to start the launcher of one run under ``iso.level``."""
    if iso.level == "bwrap":
        prefix = [shutil.which("bwrap"), *bwrap_options(python_dirs, input_host, disk_mb), "--"]
        input_dir, work_dir, cwd = INPUT_IN_BWRAP, WORK_IN_BWRAP, "/"
    else:
        userns = [] if is_root() else ["--user", "--map-root-user"]
        prefix = [] if iso.level == "process" else [
            shutil.which("unshare"), *userns, "--net", "--pid", "--mount", "--fork",
            "--kill-child", "--mount-proc", "--"]
        input_dir, work_dir, cwd = input_host, work_host, work_host
    launch = [python, "-I", f"{input_dir}/sandbox_launcher.py", f"{input_dir}/config.json"]
    return Command(prefix + launch, cwd, input_dir, work_dir)


def bwrap_options(python_dirs: list[str], input_host: str, disk_mb: int) -> list[str]:
    opts = ["--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid",
            "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if is_root():
        opts += ["--cap-drop", "ALL"]
        opts += [a for cap in ("SETUID", "SETGID", "KILL") for a in ("--cap-add", f"CAP_{cap}")]
    else:
        opts += ["--unshare-user", "--uid", str(USERNS_UID), "--gid", str(USERNS_UID)]
    size = str(int(disk_mb) << 20)
    opts += ["--proc", "/proc", "--dev", "/dev"]
    for tmpfs in (WORK_IN_BWRAP, "/dev/shm"):  # /dev/shm: multiprocessing's semaphores
        opts += ["--size", size, "--perms", "1777", "--tmpfs", tmpfs]
    binds = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            opts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            binds.append(path)
    binds += [p for p in (f"/etc/{name}" for name in _ETC_FILES) if os.path.exists(p)]
    binds += _outermost(p for p in python_dirs if not any(_under(p, b) for b in binds))
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
    return sorted(p for p in parents
                  if p != WORK_IN_BWRAP and not any(_under(p, b) for b in binds))


async def python_dirs(python: str) -> list[str]:
    """The directories the interpreter needs (bound read-only into bwrap)."""
    script = ("import sys; print('\\n'.join({sys.prefix, sys.base_prefix, sys.exec_prefix,"
              " sys.base_exec_prefix}))")
    try:
        proc = await asyncio.create_subprocess_exec(
            python, "-I", "-c", script, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=sandbox_env("/"), start_new_session=True)
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
