"""Writing rows in the layouts a hub dataset reaches us in: JSONL, CSV, parquet, save_to_disk."""

import json

import pytest


@pytest.fixture
def write_dataset(tmp_path, monkeypatch):
    """``write(rows_by_split, kind)`` -> the path of a local copy of those rows.

    ``kind`` is ``jsonl``, ``csv`` or ``parquet`` (the first split only, one file, as a user
    who exported a table would have it) or ``disk`` (every split, via ``save_to_disk``).
    What ``datasets`` caches while reading them stays in the test's folder.
    """
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")

    def write(rows_by_split: dict[str, list[dict]], kind: str):
        first = next(iter(rows_by_split.values()))
        target = tmp_path / f"{kind}-data"
        if kind == "jsonl":
            target = target.with_suffix(".jsonl")
            target.write_text("".join(json.dumps(row) + "\n" for row in first), encoding="utf-8")
        elif kind == "csv":
            target = target.with_suffix(".csv")
            datasets.Dataset.from_list(first).to_csv(str(target))
        elif kind == "parquet":
            target = target.with_suffix(".parquet")
            datasets.Dataset.from_list(first).to_parquet(str(target))
        elif kind == "disk":
            splits = {
                name: datasets.Dataset.from_list(rows) for name, rows in rows_by_split.items()
            }
            datasets.DatasetDict(splits).save_to_disk(str(target))
        else:
            raise ValueError(kind)
        return target

    return write


@pytest.fixture
def hub_unreachable(monkeypatch):
    """``datasets.load_dataset`` fails as it does on a machine without hub access."""
    datasets = pytest.importorskip("datasets")

    def offline(name, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
