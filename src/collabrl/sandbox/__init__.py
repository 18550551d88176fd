"""Running model-written code against tests, safely: the sandbox, its isolation levels and the
task-set gate. ``core`` runs the code and ``verdict`` judges the run; ``isolation`` describes
bubblewrap / unshare / plain-process isolation; ``probe`` checks at start-up what a level really
protects here; ``policy`` builds sandboxes from the config and describes the setting (weak
isolation is refused unless opted into); ``sandbox_launcher``, ``sandbox_mounts``,
``sandbox_runner`` and ``sandbox_guards`` are the scripts that run *inside* the sandbox (copied
there by file name); ``gate`` checks a task set before it is scored."""

from collabrl.sandbox.core import Sandbox, SandboxResult
from collabrl.sandbox.gate import CodeTests, GateError, GateReport, check_task_set
from collabrl.sandbox.isolation import Isolation, SandboxRefused, SandboxUnavailable
from collabrl.sandbox.policy import config_sandbox, describe_sandbox, sandbox_for, sandbox_record

__all__ = [
    "Sandbox",
    "SandboxResult",
    "SandboxUnavailable",
    "SandboxRefused",
    "Isolation",
    "CodeTests",
    "GateError",
    "GateReport",
    "check_task_set",
    "config_sandbox",
    "describe_sandbox",
    "sandbox_for",
    "sandbox_record",
]
