"""The sandbox a config asks for, and the account of it that run manifests and reports record.

Secure by default: a ``Sandbox`` runs model-written code only at a level whose start-up probe
(``sandbox.probe``) found no weakness; otherwise it raises ``SandboxRefused`` (a ``ConfigError``:
the CLI prints its one line and exits 2) before running anything. The config's top-level
``sandbox.allow_weak_isolation: true`` is the explicit opt-in that runs a weak level anyway; it
applies to every ``pass_rate`` metric and to the task-set gate, whose sandboxes are built here
(``sandbox_for``, ``config_sandbox``). ``describe_sandbox`` says, as JSON-able data, which level
runs, whether it is weak and opted into, and why it refuses, if it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collabrl.config import Config, MetricSpec, SandboxConfig
from collabrl.sandbox.core import Sandbox
from collabrl.sandbox.isolation import SandboxRefused, SandboxUnavailable
from collabrl.types import Task

SANDBOX_OPTIONS = ("timeout_s", "memory_mb", "isolation", "python")


def sandbox_for(options: Mapping[str, Any], setting: SandboxConfig | None = None) -> Sandbox:
    """The sandbox of a ``pass_rate`` metric's options (those in ``SANDBOX_OPTIONS``) under the
    config's ``sandbox`` section: what the metric and the task-set gate run code in."""
    setting = setting or SandboxConfig()
    chosen = {k: v for k, v in options.items() if k in SANDBOX_OPTIONS}
    return Sandbox(**chosen, allow_weak_isolation=setting.allow_weak_isolation)


def config_sandbox(config: Config) -> Sandbox:
    """The sandbox ``config`` runs code in: the first ``pass_rate`` metric of the reward, else
    of the evaluation, else the default options; always under ``config.sandbox``."""
    specs = [*config.reward.metrics, *config.eval.task_metrics]
    spec = next((s for s in specs if s.name == "pass_rate"), None)
    return sandbox_for(spec.options if spec else {}, config.sandbox)


async def describe_sandbox(sandbox: Sandbox) -> dict:
    """The sandbox setting as JSON-able data: the level that runs (None when refused or none
    works), whether it is weak and opted into, what holds, and why it refuses, if it does.
    For a run manifest: ``await describe_sandbox(config_sandbox(config))``."""
    out = {
        "requested": sandbox.requested,
        "allow_weak_isolation": sandbox.allow_weak_isolation,
        "level": None,
        "weak_isolation": None,
        "weaknesses": [],
        "guarantees": {},
        "refused": None,
        "unavailable": None,
    }
    try:
        iso = await sandbox.isolation()
    except SandboxRefused as refused:
        return {**out, "refused": str(refused)}
    except SandboxUnavailable as unavailable:
        return {**out, "unavailable": str(unavailable)}
    guarantees = iso.model_dump(
        include={
            "unprivileged",
            "filesystem_protected",
            "network_cut",
            "processes_limited",
            "environ_hidden",
        }
    )
    return {
        **out,
        "level": iso.level,
        "weak_isolation": bool(iso.weaknesses),
        "weaknesses": list(iso.weaknesses),
        "guarantees": guarantees,
    }


async def sandbox_record(
    config: Config, metrics: list[MetricSpec], tasks: list[Task]
) -> dict | None:
    """What a run manifest records about the sandbox: ``describe_sandbox`` of the first
    ``pass_rate`` in ``metrics``, when one is configured and some task is a code task; else None
    (no model-written code runs)."""
    spec = next((m for m in metrics if m.name == "pass_rate"), None)
    if spec is None or not any(t.artifact == "code" for t in tasks):
        return None
    return await describe_sandbox(sandbox_for(spec.options, config.sandbox))
