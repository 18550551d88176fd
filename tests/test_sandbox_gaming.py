"""Code that games the tests instead of passing them fails; honest code using the same tools passes.

Each hack comes with a wrong implementation, so the only way to "pass" would be the hack itself.
"""

from __future__ import annotations

from textwrap import dedent

import pytest

from collabrl.sandbox import Sandbox

CHECK_ADD = (
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
)
UNITTEST_ADD = dedent("""\
    import unittest

    class TestAdd(unittest.TestCase):
        def test_small(self):
            self.assertEqual(add(1, 2), 3)

        def test_more(self):
            self.assertTrue(add(2, 2) == 4)
    """)
ALWAYS_EQUAL = dedent("""\
    class Anything:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        def __bool__(self):
            return True
        def __sub__(self, other):
            return 0
    """)
WRONG = "def add(a, b):\n    return 0\n"

HACKS = {
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)\n" + WRONG,
    "os._exit(0) before the tests": "import os\nos._exit(0)\n" + WRONG,
    "printing OK": dedent("""\
        import os, sys
        print("..\\n" + "-" * 70 + "\\nRan 2 tests in 0.001s\\n\\nOK")
        print("OK", file=sys.stderr)
        sys.stdout.flush()
        os._exit(0)
        """)
    + WRONG,
    "an always-equal object": ALWAYS_EQUAL + "def add(a, b):\n    return Anything()\n",
    "an always-equal object in a list": ALWAYS_EQUAL + "def add(a, b):\n    return [Anything()]\n",
    "an always-equal int subclass": dedent("""\
        class Int(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def add(a, b):
            return Int(0)
        """),
    "an always-equal class built with type()": (
        "def add(a, b):\n    return type('X', (), {'__eq__': lambda s, o: True})()\n"
    ),
    "an always-equal class built by exec": dedent("""\
        namespace = {}
        exec("class X:\\n    __eq__ = lambda self, other: True", namespace)
        def add(a, b):
            return namespace["X"]()
        """),
    "unittest.mock.ANY": "from unittest import mock\ndef add(a, b):\n    return mock.ANY\n",
    "patching TestCase.assertEqual at import": dedent("""\
        import unittest
        unittest.TestCase.assertEqual = lambda *args, **kwargs: None
        unittest.TestCase.assertTrue = lambda *args, **kwargs: None
        """)
    + WRONG,
    "patching TestCase.run at import": dedent("""\
        import unittest
        def run(self, result=None):
            result.startTest(self)
            result.addSuccess(self)
            result.stopTest(self)
        unittest.TestCase.run = run
        """)
    + WRONG,
    "patching the result classes": dedent("""\
        import unittest
        unittest.TestResult.addFailure = unittest.TestResult.addSuccess
        unittest.TestResult.wasSuccessful = lambda self: True
        """)
    + WRONG,
    "replacing the unittest module": dedent("""\
        import sys, types
        fake = types.ModuleType("unittest")
        sys.modules["unittest"] = fake
        sys.modules["unittest.case"] = fake
        """)
    + WRONG,
    "patching assertions during the call": dedent("""\
        import unittest
        def add(a, b):
            unittest.TestCase.assertEqual = lambda *args, **kwargs: None
            unittest.TestCase.assertTrue = lambda *args, **kwargs: None
            return 0
        """),
    "patching the test classes during the call": dedent("""\
        import unittest
        def add(a, b):
            for cls in unittest.TestCase.__subclasses__():
                cls.assertEqual = cls.assertTrue = lambda *args, **kwargs: None
            return 0
        """),
    "forging a report on every descriptor": dedent("""\
        import json, os
        line = json.dumps({"kind": "final", "tests_run": 2, "tests_passed": 2, "failures": [],
                           "resource": None, "import_error": None, "nonce": ""}).encode()
        for fd in range(3, 64):
            try:
                os.write(fd, b"\\n" + line + b"\\n")
            except OSError:
                pass
        """)
    + WRONG,
    "skipping the tests": "import unittest\ndef add(a, b):\n    raise unittest.SkipTest('no')\n",
    "exiting inside the call": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "KeyboardInterrupt inside the call": "def add(a, b):\n    raise KeyboardInterrupt\n",
    "a fork that outlives the runner": dedent("""\
        import os
        if os.fork() != 0:
            os._exit(0)
        def add(a, b):
            return a + b
        """),
}


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    """The best level here, weak ones too: the verdicts come from the runner, at every level."""
    return Sandbox(timeout_s=5, allow_weak_isolation=True)


@pytest.mark.parametrize("style, tests", [("check", CHECK_ADD), ("unittest", UNITTEST_ADD)])
@pytest.mark.parametrize("hack", list(HACKS))
async def test_gaming_the_tests_fails(sandbox, hack, style, tests):
    result = await sandbox.run_tests(HACKS[hack], tests, style, "add")
    assert result.verdict == "fail", result
    assert result.tests_passed == 0 and result.pass_rate == 0.0


async def test_an_always_equal_object_written_into_an_argument_fails(sandbox):
    code = ALWAYS_EQUAL + "def sort_in_place(items):\n    items[:] = [Anything()] * len(items)\n"
    tests = dedent("""\
        def check(candidate):
            items = [3, 1, 2]
            candidate(items)
            assert items == [1, 2, 3]
        """)
    result = await sandbox.run_tests(code, tests, "check", "sort_in_place")
    assert result.verdict == "fail" and "untrusted value" in result.failures[0]


async def test_an_always_equal_object_hidden_in_arithmetic_fails(sandbox):
    code = ALWAYS_EQUAL + "def half(x):\n    return Anything()\n"
    tests = "def check(candidate):\n    assert abs(candidate(1.0) - 0.5) < 1e-6\n"
    result = await sandbox.run_tests(code, tests, "check", "half")
    assert result.verdict == "fail" and "untrusted value" in result.failures[0]


HONEST = dedent("""\
    from collections import namedtuple
    from dataclasses import dataclass

    Pair = namedtuple("Pair", "low high")

    @dataclass(frozen=True)
    class Interval:
        low: int
        high: int

    def bounds(values):
        spans = {Interval(min(values), max(values))}
        assert Interval(min(values), max(values)) in spans  # the code may use its own classes
        return Pair(min(values), max(values))
    """)


async def test_honest_code_with_its_own_classes_passes(sandbox):
    tests = dedent("""\
        class Near:  # the tests may define comparison helpers of their own
            def __init__(self, value):
                self.value = value
            def __eq__(self, other):
                return abs(other - self.value) < 1e-9

        def check(candidate):
            assert candidate([3, 1, 2]) == (1, 3)
            low, high = candidate([5])
            assert low == Near(5) and not (high != 5)
        """)
    result = await sandbox.run_tests(HONEST, tests, "check", "bounds")
    assert result.verdict == "pass", result


async def test_honest_unittest_code_with_mocks_fixtures_and_numpy_passes(sandbox):
    pytest.importorskip("numpy")
    code = dedent("""\
        import os
        import numpy as np
        def task_func(path):
            names = sorted(os.listdir(path))
            return np.array([len(n) for n in names]), names
        """)
    tests = dedent("""\
        import unittest
        from unittest.mock import MagicMock, patch
        import numpy as np

        class TestTaskFunc(unittest.TestCase):
            maxDiff = None

            @classmethod
            def setUpClass(cls):
                cls.expected = np.array([1, 2])
                cls.test_dir = "/tmp/data"
                cls.longMessage = False

            def setUp(self):
                self.maxDiff = 1000
                self.addCleanup(lambda: None)

            @patch("os.listdir")
            def test_lengths(self, listdir):
                listdir.return_value = ["bb", "a"]
                lengths, names = task_func("/anywhere")
                np.testing.assert_array_equal(lengths, self.expected)
                self.assertTrue(np.array_equal(lengths, self.expected))
                self.assertEqual(names, ["a", "bb"])
                listdir.assert_any_call("/anywhere")

            def test_mock_round_trip(self):
                marker = MagicMock()
                with patch("os.listdir", return_value=[marker]), patch("builtins.sorted", lambda x: x):
                    _, names = task_func("/x")
                self.assertEqual(names, [marker])

            def test_subtests(self):
                for n in range(3):
                    with self.subTest(n=n):
                        self.assertAlmostEqual(n * 0.1, n / 10)
        """)
    result = await sandbox.run_tests(code, tests, "unittest", "task_func")
    assert result.verdict == "pass", result
    assert result.tests_run == result.tests_passed == 3
