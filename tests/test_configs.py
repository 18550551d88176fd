"""Every shipped config loads, and its first line is the command that launches it."""

from pathlib import Path

import pytest

from collabrl.config import load_config
from collabrl.metrics.registry import METRIC_NAMES
from collabrl.study.config import load_study_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_exist():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_starts_with_its_launch_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "collabrl " in first, first
    assert f"--config configs/{path.name}" in first
    if path.name == "study.yaml":  # the user-study app has its own config model
        assert load_study_config(path).systems
        return
    config = load_config(path)
    assert config.roles, "a shipped config binds at least one role"
    for spec in config.reward.metrics:
        assert spec.name in METRIC_NAMES, f"{path.name}: unknown metric {spec.name}"
