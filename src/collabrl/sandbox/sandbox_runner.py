"""The test runner that runs *inside* the sandbox, in the same process as the untrusted code.

Standard library only: it is copied, with ``sandbox_guards.py``, into the sandbox's read-only
input folder and started by ``sandbox_launcher.py`` as ``python -I sandbox_runner.py
config.json``; collabrl itself is not importable there.

Protocol with the host (``collabrl.sandbox``): the host writes a random nonce on stdin; the runner
reads it, replaces stdin with /dev/null, makes the result pipe (``config["result_fd"]``)
non-inheritable and sends JSON lines carrying the nonce on it:

1. ``invalid``: the tests themselves could not be loaded (a task problem: verdict *error*);
2. ``started``: the tests loaded; sent *before* the candidate code is imported, so a run that
   never says "started" is an infrastructure failure and one that did is the code's business;
3. ``final``: tests run and passed, short failure reasons, the resource limit an error showed;
   then the runner ends with ``os._exit(0)`` (no candidate ``atexit`` hook runs).

What the code prints never counts; ``sys.exit``/``os._exit`` before the tests leave no ``final``
line (a failure); a forked copy of the runner never reports (only the process that sent
``started`` may send). The tests are executed (defining ``check`` or the TestCase classes) before
the candidate is imported, in a namespace of their own named ``__tests__``; the candidate's names
are added afterwards where the tests did not define them, and the entry point is wrapped so its
return values are checked. See ``sandbox_guards`` for the checks and their limits.

Check style (HumanEval): the tests define ``check(candidate)``; one test, ``check(entry_point)``.
Unittest style (BigCodeBench): every ``test*`` method of every TestCase class is one test, with
``setUpModule``/``setUpClass`` fixtures honoured.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib.util
import itertools
import json
import os
import sys
import types
import unittest

if __package__:  # imported as part of collabrl (documentation, tools)
    from collabrl.sandbox import sandbox_guards as guards
else:  # run as a script in the sandbox: the guards lie next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sandbox_guards as guards

    sys.path.pop(0)

MAX_FAILURES = 20
_getpid, _write, _exit, _dumps = os.getpid, os.write, os._exit, json.dumps


class Channel:
    """JSON lines with the nonce on the result pipe, only from the process that started."""

    def __init__(self, fd: int, nonce: str) -> None:
        self.fd, self.nonce, self.pid = fd, nonce, _getpid()

    def send(self, kind: str, **payload: object) -> None:
        if _getpid() != self.pid:
            _exit(1)
        data = (_dumps({"nonce": self.nonce, "kind": kind, **payload}) + "\n").encode()
        while data:
            data = data[_write(self.fd, data) :]


class Outcome:
    """Counts and reasons of a run; ``record`` is called once per test."""

    def __init__(self) -> None:
        self.run, self.passed, self.failures, self.resource = 0, 0, [], None

    def record(self, name: str, problems: list[str], resource: str | None = None) -> None:
        self.run += 1
        self.passed += not problems
        if problems and len(self.failures) < MAX_FAILURES:
            self.failures.append(f"{name}: {'; '.join(problems)}"[: guards.MAX_REASON])
        self.resource = self.resource or resource

    def payload(self) -> dict:
        return {
            "tests_run": self.run,
            "tests_passed": self.passed,
            "failures": self.failures,
            "resource": self.resource,
        }


def load_tests(config: dict, trust: guards.Trust) -> tuple[dict, set, list]:
    """Execute setup code and instrumented tests; the namespace, test-defined names, tests."""
    ns = {"__name__": guards.TESTS_MODULE, "__builtins__": builtins, guards.CHECK_NAME: trust.check}
    if config["setup"]:
        exec(compile(_read(config["setup"]), "<setup>", "exec"), ns)  # trusted: the task's code
    before = dict(ns)
    tree = ast.fix_missing_locations(guards.Instrument().visit(ast.parse(_read(config["tests"]))))
    exec(compile(tree, "<tests>", "exec"), ns)  # trusted: the task's code
    defined = {k for k, v in ns.items() if before.get(k, guards.MISSING) is not v}
    if config["test_style"] == "check":
        if not callable(ns.get("check")):
            raise ValueError("check-style tests must define check(candidate)")
        return ns, defined, [("check", ns["check"])]
    loader = unittest.TestLoader()
    classes = dict.fromkeys(
        v for v in ns.values() if isinstance(v, type) and issubclass(v, unittest.TestCase)
    )
    tests = [(cls, name) for cls in classes for name in loader.getTestCaseNames(cls)]
    if not tests:
        raise ValueError("unittest-style tests define no test methods")
    return ns, defined, tests


def import_candidate(path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    return module


def expose(module: types.ModuleType, ns: dict, defined: set, entry_point, trust) -> None:
    """Add the candidate's names to the tests' namespace; the entry point is checked."""
    for name, value in list(module.__dict__.items()):
        if not name.startswith("__") and name not in defined:
            ns[name] = value
    if entry_point and callable(module.__dict__.get(entry_point)):
        ns[entry_point] = guards.guarded(module.__dict__[entry_point], trust)


def run_check(ns: dict, check, entry_point: str, pristine, outcome: Outcome) -> None:
    problems, resource = [], None
    candidate = ns.get(entry_point)
    if not callable(candidate):
        problems.append(f"entry point {entry_point!r} is not defined by the code")
    else:
        try:
            check(candidate)
        except BaseException as exc:  # the candidate may raise anything, even exits
            problems.append(guards.describe(exc))
            resource = guards.resource_of(exc)
    problems += _tampering(pristine, [])
    outcome.record("check", problems, resource)


def run_case(cls: type, name: str, pristine, outcome: Outcome) -> None:
    collector = guards.Collector()
    try:
        case = cls(name)
        baseline = dict(vars(case).get("_type_equality_funcs", {}))
        case.run(collector)
    except BaseException as exc:  # KeyboardInterrupt & co. escape TestCase.run
        collector.problem(exc)
        baseline = None
    problems = collector.problems or ([] if collector.succeeded else ["no outcome reported"])
    tampered = _instance_tampering(case, baseline) if baseline is not None else []
    outcome.record(
        f"{cls.__name__}.{name}", problems + _tampering(pristine, tampered), collector.resource
    )


def _instance_tampering(case, baseline: dict) -> list[str]:
    own = vars(case)
    hits = [k for k in own if isinstance(vars(unittest.TestCase).get(k), types.FunctionType)]
    funcs = own.get("_type_equality_funcs", {})
    hits += [
        f"_type_equality_funcs[{k.__name__}]" for k, v in baseline.items() if funcs.get(k) is not v
    ]
    return hits


def _tampering(pristine, extra: list[str]) -> list[str]:
    changed = pristine.changes() + extra
    if not changed:
        return []
    pristine.restore()
    return [f"tampering: {', '.join(changed[:5])}"]


def run_unittest(ns: dict, tests: list, pristine, outcome: Outcome) -> None:
    module_error = _fixture(ns.get("setUpModule"))
    for cls, group in itertools.groupby(tests, key=lambda t: t[0]):
        names = [name for _, name in group]
        class_error = module_error or _fixture(cls.setUpClass)
        for name in names:
            if class_error:
                outcome.record(f"{cls.__name__}.{name}", [class_error])
            else:
                run_case(cls, name, pristine, outcome)
        if not class_error:
            _fixture(cls.tearDownClass)
        _fixture(cls.doClassCleanups)
    _fixture(ns.get("tearDownModule"))


def _fixture(fn) -> str | None:
    """Call a unittest fixture; a short description of its failure, or None."""
    if fn is None:
        return None
    try:
        fn()
    except BaseException as exc:  # fixtures run candidate code
        return f"fixture {getattr(fn, '__name__', '?')} failed: {guards.describe(exc)}"
    return None


def main(config_path: str) -> None:
    with open(config_path) as handle:
        config = json.load(handle)
    nonce = sys.stdin.readline().strip()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.set_inheritable(config["result_fd"], False)
    channel = Channel(config["result_fd"], nonce)
    trust = guards.Trust()
    guards.guard_assertions(trust)
    try:
        ns, defined, tests = load_tests(config, trust)
    except BaseException as exc:  # broken tests are reported, whatever they raise
        channel.send("invalid", reason=f"tests: {guards.describe(exc)}")
        _exit(0)
    pristine = _snapshot(tests)
    channel.send("started", expected=len(tests))
    outcome, import_error = Outcome(), None
    try:
        module = import_candidate(config["candidate"])
    except BaseException as exc:  # the code may raise anything, even SystemExit
        import_error, outcome.resource = guards.describe(exc), guards.resource_of(exc)
    pristine.restore()
    if import_error is None:
        expose(module, ns, defined, config["entry_point"], trust)
        if config["test_style"] == "check":
            run_check(ns, tests[0][1], config["entry_point"], pristine, outcome)
        else:
            run_unittest(ns, tests, pristine, outcome)
    _flush()
    channel.send("final", **outcome.payload(), import_error=import_error)
    _exit(0)


def _snapshot(tests: list) -> guards.Pristine:
    """The machinery to keep pristine: builtins, unittest, the runner, the test classes."""
    tools = [
        m for n, m in list(sys.modules.items()) if n == "unittest" or n.startswith("unittest.")
    ]
    tools += [guards, sys.modules[__name__]]
    classes = [
        v
        for m in tools
        for v in vars(m).values()
        if isinstance(v, type) and v.__module__ == m.__name__
    ]
    test_classes = {c for c, _ in tests if isinstance(c, type)}
    classes += [k for c in test_classes for k in c.__mro__ if k is not object]
    return guards.Pristine([builtins, *tools], classes, test_classes)


def _flush() -> None:
    """Flush what the code printed; a stream it replaced may fail (output is best effort)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(BaseException):
            stream.flush()


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


if __name__ == "__main__":
    main(sys.argv[1])
