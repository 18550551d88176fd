"""A new root for the ``unshare`` level as root: what bubblewrap builds, made by the launcher.

Standard library only: copied with the launcher into the sandbox's input folder and used by it
when the config has ``new_root``. The launcher then runs as root in fresh mount, PID and network
namespaces (``unshare --mount --pid --net``), and before it starts the runner under a per-run
unprivileged uid, ``enter``

1. mounts a tmpfs as the new root, a size-limited tmpfs at /tmp (the working directory) in it,
   and binds into them, read-only, only what the runner needs: the system directories, a few
   /etc files and the Python installation (so a venv under /tmp stays visible, as with bwrap).
   The directories on the way to a bind are created 0755, so an interpreter under a private home
   (/root/.pyenv with /root 0700) is reachable by the unprivileged uid while the rest of the home
   is not there;
2. binds the run's inputs read-only at /sandbox, mounts a fresh /proc (of the run's PID
   namespace), a /dev with only null, zero, full, random and urandom, and a size-limited tmpfs
   at /dev/shm; then makes the root itself read-only;
3. chroots into it. The runner has no capability, so it cannot leave the chroot; the host's files
   are out of reach and nothing written survives the run (the mount namespace dies with it).
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
DEVICES = ("null", "zero", "full", "random", "urandom")
_libc = ctypes.CDLL(None, use_errno=True)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    args = [None if a is None else a.encode() for a in (source, target, fstype, data)]
    if _libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype or ''} on {target}: {os.strerror(err)}")


def _make(path: str, like: str) -> None:
    """An empty directory or file at ``path`` (as ``like`` is), with 0755 parents."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.isdir(like):
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def bind(source: str, target: str, *, read_only: bool = True, devices: bool = False) -> None:
    _make(target, source)
    mount(source, target, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (MS_RDONLY if read_only else 0)
    mount(None, target, None, flags | (0 if devices else MS_NODEV))


def tmpfs(target: str, mode: str, size: int) -> None:
    os.makedirs(target, mode=0o755, exist_ok=True)
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={size}")


def enter(spec: dict) -> None:
    """Build the root described by ``spec`` (see ``isolation.new_root_spec``) and chroot into it."""
    os.umask(0o022)
    root = spec["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    tmpfs(root, "0755", 1 << 20)
    # The working tmpfs first, binds after: an interpreter or venv under /tmp stays visible.
    tmpfs(root + spec["work_at"], "1777", spec["size"])
    for path, target in spec["symlinks"]:
        os.symlink(target, root + path)
    for path in spec["binds"]:
        bind(path, root + path)
    bind(spec["input"], root + spec["input_at"])
    os.makedirs(root + "/proc", mode=0o755)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    tmpfs(root + "/dev", "0755", 1 << 16)
    for name in DEVICES:
        bind(f"/dev/{name}", f"{root}/dev/{name}", read_only=False, devices=True)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{name}")
    tmpfs(root + "/dev/shm", "1777", spec["size"])
    for path in (root + "/dev", root):
        mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir(spec["work_at"])
