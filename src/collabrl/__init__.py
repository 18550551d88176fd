"""collabrl: train LLMs to collaborate with people, not just answer them.

The package face: everything a Python user needs is importable from ``collabrl`` directly
(``from collabrl import load_config, Roles, DataEngine``). Names load on first use (PEP 562),
so ``import collabrl`` stays cheap and the CLI does not pay for what a command does not use.
``__all__`` is the public API; a test fails when a name in it vanishes.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_HOMES: dict[str, str] = {
    # configuration and roles
    "Config": "collabrl.config",
    "ConfigError": "collabrl.config",
    "load_config": "collabrl.config",
    "Roles": "collabrl.backends.stack",
    "Backend": "collabrl.backends.base",
    # the data every part exchanges
    "Message": "collabrl.types",
    "Conversation": "collabrl.types",
    "GenerationParams": "collabrl.types",
    "Completion": "collabrl.types",
    "Usage": "collabrl.types",
    "Task": "collabrl.types",
    "Score": "collabrl.types",
    # the method
    "UserSimulator": "collabrl.simulator",
    "UserTurn": "collabrl.simulator",
    "Assistant": "collabrl.rollout",
    "run_conversation": "collabrl.rollout",
    "ForwardSampler": "collabrl.rollout",
    "Metric": "collabrl.metrics.base",
    "build_metric": "collabrl.metrics.registry",
    "MultiturnReward": "collabrl.reward",
    "WeightedMetric": "collabrl.reward",
    "CandidateReward": "collabrl.reward",
    "build_simulator": "collabrl.assembly",
    "build_assistant": "collabrl.assembly",
    "build_reward": "collabrl.assembly",
    "DataEngine": "collabrl.engine",
    "export": "collabrl.export",
    "Evaluation": "collabrl.evaluate",
    # MR as the reward of online training (any trainer: the live policy is any Backend)
    "Prefix": "collabrl.train.prefixes",
    "load_prefixes": "collabrl.train.prefixes",
    "LiveReward": "collabrl.train.live_reward",
    "live_policy_backend": "collabrl.train.live_reward",
    # tasks, statistics, plugins
    "load_task_set": "collabrl.tasks.registry",
    "available_task_sets": "collabrl.tasks.registry",
    "bootstrap_mean": "collabrl.stats",
    "paired_difference": "collabrl.stats",
    "PluginError": "collabrl.plugins",
}

__all__ = ["__version__", *_HOMES]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'collabrl' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
