"""Running model-written code against tests, safely: the sandbox, its isolation levels and the
task-set gate. ``core`` runs the code; ``isolation`` picks and describes bubblewrap / unshare /
plain-process isolation; ``sandbox_launcher``, ``sandbox_runner`` and ``sandbox_guards`` are the
scripts that run *inside* the sandbox (copied there by file name); ``gate`` checks a task set
before it is scored."""

from collabrl.sandbox.core import Sandbox, SandboxResult, SandboxUnavailable
from collabrl.sandbox.gate import CodeTests, GateError, GateReport, check_task_set

__all__ = ["Sandbox", "SandboxResult", "SandboxUnavailable", "CodeTests", "GateError",
           "GateReport", "check_task_set"]
