"""The package face: ``from collabrl import X`` works for every public name, and none vanishes."""

import subprocess
import sys

import pytest

import collabrl

# The public API as documented in the README. Removing or renaming one of these breaks users'
# code: do it on purpose (and update this list), never by accident.
PUBLISHED = {
    "Config",
    "ConfigError",
    "load_config",
    "Roles",
    "Backend",
    "Message",
    "Conversation",
    "GenerationParams",
    "Completion",
    "Usage",
    "Task",
    "Score",
    "UserSimulator",
    "UserTurn",
    "Assistant",
    "run_conversation",
    "ForwardSampler",
    "Metric",
    "build_metric",
    "MultiturnReward",
    "WeightedMetric",
    "CandidateReward",
    "build_simulator",
    "build_assistant",
    "build_reward",
    "DataEngine",
    "export",
    "Evaluation",
    "Prefix",
    "load_prefixes",
    "LiveReward",
    "live_policy_backend",
    "load_task_set",
    "available_task_sets",
    "bootstrap_mean",
    "paired_difference",
    "PluginError",
}


def test_no_published_name_vanishes():
    assert set(collabrl.__all__) >= PUBLISHED


@pytest.mark.parametrize("name", sorted(set(collabrl.__all__) - {"__version__"}))
def test_every_public_name_imports_from_the_package(name):
    value = getattr(collabrl, name)
    assert value is not None
    exec(f"from collabrl import {name}", {})  # noqa: S102 - the import users write


def test_public_names_are_the_objects_of_their_home_modules():
    from collabrl.config import load_config
    from collabrl.engine import DataEngine

    assert collabrl.load_config is load_config
    assert collabrl.DataEngine is DataEngine


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        collabrl.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    ("imports", "heavy"),
    [
        (
            "import collabrl",
            ("torch", "transformers", "collabrl.engine", "collabrl.backends.stack"),
        ),
        # MR as the reward of another trainer, the policy served elsewhere: no torch needed
        ("from collabrl import LiveReward, load_prefixes", ("torch", "transformers", "trl")),
    ],
)
def test_importing_loads_nothing_heavy(imports, heavy):
    code = f"import sys; {imports}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
