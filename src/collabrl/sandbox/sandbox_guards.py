"""Defenses of the in-sandbox test runner against code that games tests instead of passing them.

Standard library only, like ``sandbox_runner.py``, which imports it before the candidate code:

* ``Pristine``: the dicts of ``builtins``, the ``unittest`` modules, their classes, the test
  classes' methods and the runner's own modules are snapshotted before the candidate is imported,
  restored after the import, and compared after every test; a test during which anything changed
  fails ("tampering"). This defeats patching ``TestCase.assertEqual``, ``TestResult`` & co.
* ``Trust``: a value whose type (or a type in a list/tuple/set/dict it holds) is a Python class
  defined outside the standard library, site-packages and the tests, and that defines comparison,
  truth, arithmetic, conversion, containment, attribute-lookup or ``__class__`` hooks (an "always
  equal" object), or ``unittest.mock.ANY``, is refused: at the entry point's return
  (``guarded``), at every comparison / ``assert`` / ``not`` / ``and``-``or`` operand of the test
  code (rewritten by ``Instrument``), and for every argument of the ``TestCase.assert*`` methods
  (``guard_assertions``). The refusal raises ``UntrustedValue``, a ``BaseException``, so a test's
  ``except Exception`` cannot swallow it.
* ``Collector``: our own unittest result, which never formats candidate exceptions beyond
  ``describe`` and records which resource limit an error shows (``resource_of``).

Limits, by design: all of this shares a process with the candidate, so code written against this
very runner (walking frames, rebinding function code objects, editing library classes or modules
the snapshot does not cover, configuring an always-equal ``MagicMock``) can still forge a verdict.
The sandbox contains what such code can do; these guards defeat the generic hacks seen in
practice (exits before the tests, printed "OK", always-equal objects, patched unittest).
"""

from __future__ import annotations

import ast
import errno
import os
import site
import sys
import types
import unittest
import unittest.mock

CHECK_NAME = "__sandbox_check__"
TESTS_MODULE = "__tests__"
MAX_REASON = 300
WALK_BUDGET = 200_000
FORGEABLE = frozenset(
    {
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__bool__",
        "__contains__",
        "__getattr__",
        "__getattribute__",
        "__class__",
        "__instancecheck__",
        "__subclasscheck__",
        "__float__",
        "__int__",
        "__index__",
        "__complex__",
        "__abs__",
        "__neg__",
        "__pos__",
        "__round__",
        "__trunc__",
        "__floor__",
        "__ceil__",
        "__add__",
        "__radd__",
        "__sub__",
        "__rsub__",
        "__mul__",
        "__rmul__",
        "__truediv__",
        "__rtruediv__",
        "__floordiv__",
        "__rfloordiv__",
        "__mod__",
        "__rmod__",
        "__pow__",
        "__rpow__",
        "__and__",
        "__rand__",
        "__or__",
        "__ror__",
        "__xor__",
        "__rxor__",
    }
)
RESOURCE_ERRNOS = {
    errno.EFBIG: "file_size",
    errno.ENOSPC: "disk",
    errno.EDQUOT: "disk",
    errno.EMFILE: "open_files",
    errno.ENFILE: "open_files",
    errno.EAGAIN: "processes",
}

# Saved before any candidate code runs: what the runner needs after it.
_mro = type.__dict__["__mro__"].__get__
_class_dict = type.__dict__["__dict__"].__get__
_class_module = type.__dict__["__module__"].__get__
_class_flags = type.__dict__["__flags__"].__get__
_HEAPTYPE = 1 << 9
MISSING = object()
_ANY_TYPE = type(unittest.mock.ANY)
_PRISTINE_TESTCASE = unittest.TestCase


class UntrustedValue(BaseException):
    """Raised where a test meets a value whose behaviour the candidate defines."""


def describe(exc: BaseException) -> str:
    """``Type: message``, short; formatting candidate exceptions may itself fail."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # a candidate __str__ may raise anything
        text = type(exc).__name__
    return text[:MAX_REASON]


def resource_of(exc: BaseException) -> str | None:
    if issubclass(type(exc), MemoryError):
        return "memory"
    if issubclass(type(exc), OSError):
        return RESOURCE_ERRNOS.get(OSError.__dict__["errno"].__get__(exc))
    return None


class Trust:
    """Decides whether a value's behaviour is defined by trusted code (see module docstring)."""

    def __init__(self) -> None:
        paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()]
        self.roots = tuple(os.path.realpath(p) + os.sep for p in paths)
        self._verdicts: dict[int, tuple[type, str | None]] = {}

    def _library_class(self, cls: type) -> bool:
        try:
            name = _class_module(cls)
        except AttributeError:
            return False
        if name == TESTS_MODULE:
            return True
        path = getattr(sys.modules.get(name), "__file__", None)
        return isinstance(path, str) and os.path.realpath(path).startswith(self.roots)

    def why(self, t: type) -> str | None:
        """Why values of type ``t`` cannot be trusted, or None."""
        cached = self._verdicts.get(id(t))
        if cached is not None and cached[0] is t:
            return cached[1]
        reason = None
        for cls in (*_mro(t), *_mro(type(t))):
            if cls is _ANY_TYPE:
                reason = "unittest.mock.ANY"
            elif _class_flags(cls) & _HEAPTYPE and not self._library_class(cls):
                hooks = FORGEABLE.intersection(_class_dict(cls))
                if hooks:
                    reason = f"class {cls.__name__} defines {min(hooks)}"
            if reason:
                break
        self._verdicts[id(t)] = (t, reason)
        return reason

    def check(self, value: object) -> object:
        """``value`` itself, or UntrustedValue when it (or what it holds) is untrusted."""
        stack, seen, budget = [value], set(), WALK_BUDGET
        while stack and budget > 0:
            item = stack.pop()
            why = self.why(type(item))
            if why:
                raise UntrustedValue(f"untrusted value: {why}")
            base = _container(type(item))
            if base is None or id(item) in seen:
                continue
            seen.add(id(item))
            items = (
                [*dict.keys(item), *dict.values(item)] if base is dict else [*base.__iter__(item)]
            )
            budget -= len(items)
            kinds = set(map(type, items))
            for kind in kinds:
                if self.why(kind):
                    raise UntrustedValue(f"untrusted value: {self.why(kind)}")
            if any(_container(kind) for kind in kinds):
                stack.extend(i for i in items if _container(type(i)))
        return value


def _container(t: type) -> type | None:
    mro = _mro(t)
    return next((base for base in (dict, list, tuple, set, frozenset) if base in mro), None)


class Instrument(ast.NodeTransformer):
    """Routes every comparison operand and truth test of the test code through the check."""

    def _wrap(self, node: ast.expr) -> ast.expr:
        call = ast.Call(func=ast.Name(id=CHECK_NAME, ctx=ast.Load()), args=[node], keywords=[])
        return ast.copy_location(call, node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        node.left = self._wrap(node.left)
        node.comparators = [self._wrap(c) for c in node.comparators]
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        self.generic_visit(node)
        node.test = self._wrap(node.test)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = self._wrap(node.operand)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        node.values = [self._wrap(v) for v in node.values]
        return node


def guarded(fn, trust: Trust):
    """``fn`` whose return values must be trusted."""

    def call(*args, **kwargs):
        return trust.check(fn(*args, **kwargs))

    return call


def guard_assertions(trust: Trust) -> None:
    """Make every ``TestCase.assert*``/``fail*`` method check its arguments (``msg`` excepted)."""

    def wrap(method):
        def checked(self, *args, **kwargs):
            for value in (*args, *(v for k, v in kwargs.items() if k != "msg")):
                trust.check(value)
            return method(self, *args, **kwargs)

        return checked

    for name, value in list(vars(_PRISTINE_TESTCASE).items()):
        if name.startswith(("assert", "fail")) and isinstance(value, types.FunctionType):
            setattr(_PRISTINE_TESTCASE, name, wrap(value))


class Pristine:
    """Snapshot of modules and classes; ``changes()`` lists what differs, ``restore()`` undoes it.

    For classes in ``loose`` (the test classes, whose ``setUpClass`` may store data such as
    ``cls.test_dir``) only their methods and names that shadow ``TestCase`` methods count.
    """

    def __init__(self, modules: list[types.ModuleType], classes: list[type], loose: set) -> None:
        self.modules = [(m.__name__, m, dict(m.__dict__)) for m in modules]
        self.classes = [(c, dict(_class_dict(c))) for c in dict.fromkeys(classes)]
        self.loose = loose
        self.shadowable = {k for k, v in vars(_PRISTINE_TESTCASE).items() if _is_method(v)}

    def _keys(self, cls: type, snap: dict) -> set:
        current = _class_dict(cls)
        keys = set(snap) | set(current)
        if cls in self.loose:
            keys = {k for k in keys if _is_method(snap.get(k)) or k in self.shadowable}
        return {k for k in keys if current.get(k, MISSING) is not snap.get(k, MISSING)}

    def changes(self) -> list[str]:
        """What differs; names a module adds are ignored (importing a submodule adds one)."""
        out = [
            f"module {name}"
            for name, m, snap in self.modules
            if (sys.modules.get(name, m) is not m) or _differs(m.__dict__, snap)
        ]
        out += [
            f"{c.__name__}.{k}" for c, snap in self.classes for k in sorted(self._keys(c, snap))
        ]
        return out

    def restore(self) -> None:
        for name, module, snap in self.modules:
            if name in sys.modules:
                sys.modules[name] = module
            module.__dict__.update(snap)
        for cls, snap in self.classes:
            for key in self._keys(cls, snap):
                if key in snap:
                    type.__setattr__(cls, key, snap[key])
                else:
                    type.__delattr__(cls, key)


def _is_method(value: object) -> bool:
    return isinstance(value, (types.FunctionType, classmethod, staticmethod))


def _differs(current: dict, snap: dict) -> bool:
    return any(current.get(k, MISSING) is not v for k, v in snap.items())


class Collector(unittest.TestResult):
    """Outcome of one TestCase run, without formatting (which would run candidate code).

    The camelCase methods are unittest's result protocol.
    """

    def __init__(self) -> None:
        super().__init__()
        self.succeeded, self.problems, self.resource = False, [], None

    def problem(self, exc: BaseException | None, text: str | None = None) -> None:
        self.problems.append(text or (describe(exc) if exc is not None else "failed"))
        self.resource = self.resource or (resource_of(exc) if exc is not None else None)

    def addSuccess(self, test):
        self.succeeded = True

    def addExpectedFailure(self, test, err):
        self.succeeded = True

    def addError(self, test, err):
        self.problem(err[1])

    def addFailure(self, test, err):
        self.problem(err[1])

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.problem(err[1])

    def addSkip(self, test, reason):
        self.problem(None, f"skipped: {reason}"[:MAX_REASON])

    def addUnexpectedSuccess(self, test):
        self.problem(None, "unexpected success")
