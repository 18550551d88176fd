"""Append-only JSONL records and atomic final artifacts.

Long runs write one JSON line per finished item: the whole record is serialised first and written
with its newline in one call, then flushed, so a crash leaves at most one partial last line, which
readers ignore. NaN and infinities are refused (JSON has no such values; unscored is null).
Final artifacts are written to a temporary file in the same folder and renamed into place, with
a manifest (row count, sha256), so a full disk or a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def dumps_record(record: BaseModel | dict[str, Any]) -> str:
    """One JSON line (without newline); raises ValueError on NaN or infinity."""
    data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class JsonlAppender:
    """Appends records to a JSONL file, one ``write`` per line, flushed (optionally fsynced)."""

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fsync = fsync

    def append(self, record: BaseModel | dict[str, Any]) -> None:
        self._file.write(dumps_record(record) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _drop_partial_tail(path: Path) -> None:
    """Cut a final line that has no newline (left by a crash) before appending after it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a final line without newline (an interrupted write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                return
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{number}: not valid JSON ({e.msg})") from None


def latest_by(records: Iterable[dict[str, Any]], *key: str) -> dict[Any, dict[str, Any]]:
    """The last record for each value of ``key`` (one field, or a tuple of fields): a rerun
    appends a new record for an item it retried, and the newest one is the item's result."""

    def key_of(record: dict[str, Any]) -> Any:
        return record[key[0]] if len(key) == 1 else tuple(record[k] for k in key)

    return {key_of(record): record for record in records}


def write_atomic(path: str | Path, lines: Iterable[str]) -> dict[str, Any]:
    """Write text lines to ``path`` via a temp file + rename; return the manifest entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, rows = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                data = line + "\n"
                f.write(data)
                digest.update(data.encode())
                rows += 1
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are ordinary shareable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": path.name, "rows": rows, "sha256": digest.hexdigest()}


def file_manifest(path: str | Path) -> dict[str, Any]:
    """Row count and sha256 of an existing JSONL file."""
    path = Path(path)
    data = path.read_bytes()
    return {
        "file": path.name,
        "rows": data.count(b"\n"),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def write_manifest(folder: str | Path, entries: list[dict[str, Any]], **extra: Any) -> Path:
    """``manifest.json`` in ``folder``, written atomically."""
    target = Path(folder) / "manifest.json"
    write_atomic(target, [json.dumps({"files": entries, **extra}, indent=2, allow_nan=False)])
    return target
