"""Checks of the paths a command reads and writes, made before the command starts any work.

A run that fails after an hour because its output folder turns out to be a file, or that stops
half-way with some outputs written, is worse than one that refuses at once. Each command
therefore checks its input and output locations first. A failure is a ``PathError`` whose
one-line message names the setting (``generate.output_dir``, ``--output``) and the path. The
checks create nothing: writability is probed with a temporary file that is gone at once,
because ``os.access`` says yes to root even on a read-only file system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from collabrl.config import Config


class PathError(ValueError):
    """A path a command cannot use; the message names the setting and the path."""


def check_output_dir(path: str | Path, key: str) -> None:
    """``path`` is a folder, or can be made one, and files can be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PathError(f"{key}: {path} is a file, not a folder")
    _check_writable_folder(path, key)


def check_output_file(path: str | Path, key: str) -> None:
    """``path`` is a file, or can be created as one, and can be written (or replaced)."""
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{key}: {path} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise PathError(f"{key}: {path} is not writable")
    _check_writable_folder(path.parent, key, target=path)


def check_cache(config: Config) -> None:
    """The response cache file, when the cache is on. Replay only reads it: there it must exist
    but may be read-only (a recording on a shared mount)."""
    if config.cache.mode == "replay":
        if not Path(config.cache.path).is_file():
            raise PathError(
                f"cache.path: {config.cache.path} is not a file: replay needs a recorded cache"
            )
    elif config.cache.enabled:
        check_output_file(config.cache.path, "cache.path")


def check_input_dir(path: str | Path, key: str) -> None:
    """``path`` is an existing folder whose files can be listed."""
    path = Path(path)
    if not path.exists():
        raise PathError(f"{key}: {path} does not exist")
    if not path.is_dir():
        raise PathError(f"{key}: {path} is a file, not a folder")
    try:
        os.listdir(path)
    except OSError as error:
        raise PathError(f"{key}: cannot read {path}: {error.strerror}") from None


def _check_writable_folder(folder: Path, key: str, target: Path | None = None) -> None:
    """The nearest existing folder at or above ``folder`` accepts a new file."""
    target = folder if target is None else target
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise PathError(f"{key}: cannot create {target}: {base} is a file")
    reason = _write_probe(base)
    if reason is not None:
        raise PathError(f"{key}: cannot write {target}: {base}: {reason}")


def _nearest_existing(path: Path) -> Path:
    return next((c for c in (path, *path.parents) if c.exists()), Path("."))


def _write_probe(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, or None when one can."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".collabrl-probe-"):
            return None
    except OSError as error:
        return error.strerror or str(error)
