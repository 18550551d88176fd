"""Answer accuracy: is the final answer a conversation arrived at equal to the reference?

The answer is extracted by the shared ``ArtifactExtractor``, then compared deterministically:

1. **exact**: the two answers are the same text once LaTeX dressing is removed (``\\boxed``,
   ``$``, ``\\left``/``\\right``, spacing, ``\\text{...}`` units, degrees, "x =", "answer:").
   This also settles plain-text answers ("Monday", "(C)").
2. **sympy**: both sides are turned into sympy expressions by a small LaTeX-to-Python
   translator (``\\frac``, ``\\sqrt``, ``^``, ``\\pi``, ``\\cdot``, mixed numbers, percentages)
   and compared numerically (symbols are evaluated at fixed points), with ``simplify(a - b)``
   only when numbers cannot decide. ``sympy.parsing.latex`` is not used (it needs antlr).
   Tuples and intervals compare in order with the same brackets; sets ``\\{...\\}`` and bare
   lists ("2, 3" or "x = 2 or x = 3") compare in any order. Percentages are lenient: "50%"
   matches both "50" (the MATH convention of dropping the sign) and "0.5" (its value).
3. **judge**: when either side cannot be parsed and a judge backend was given, the
   ``judge_answer_match`` prompt decides CORRECT/INCORRECT; without one the score is
   ``unscored("answer_unparsable")``.

Safety: the expression text goes through ``parse_expr`` (which evaluates Python), so it must
pass a whitelist first: digits, single-letter symbols, a few function names, ``+-*/().``;
expressions are parsed unevaluated and huge or nested exponents are refused, so no answer can
make sympy compute a billion-digit integer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from tokenize import TokenError

import sympy
from sympy.parsing.sympy_parser import (
    implicit_application,
    implicit_multiplication,
    parse_expr,
    standard_transformations,
)

from collabrl.backends.base import Backend
from collabrl.metrics.extraction import ArtifactExtractor, missing_artifact_score
from collabrl.metrics.judge import LLMJudge
from collabrl.types import Conversation, Score, Task

ANSWER_MATCH_GRADES = {"CORRECT": 1.0, "INCORRECT": 0.0}


class AnswerAccuracy:
    """1.0 when the extracted final answer equals ``task.reference``, else 0.0."""

    name = "accuracy"
    artifact = "answer"

    def __init__(
        self,
        extractor: ArtifactExtractor,
        judge_backend: Backend | None = None,
        *,
        max_reasks: int = 2,
    ) -> None:
        self.extractor = extractor
        self.judge = (
            None
            if judge_backend is None
            else LLMJudge(
                judge_backend, "judge_answer_match", ANSWER_MATCH_GRADES, max_reasks=max_reasks
            )
        )

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        if task.reference is None:
            return Score.unscored("no_reference")
        extraction = await self.extractor.extract(conversation, task)
        if extraction.text is None:
            return missing_artifact_score(extraction, reference=task.reference)
        detail = {
            "extracted": extraction.text,
            "reference": task.reference,
            "extraction_method": extraction.method,
        }
        verdict = answers_match(extraction.text, task.reference)
        if verdict is not None:
            equal, method = verdict
            return Score(
                value=float(equal), raw=extraction.raw, detail={**detail, "method": method}
            )
        if self.judge is None:
            return Score.unscored("answer_unparsable", extraction.raw, **detail)
        judged = await self.judge.judge(
            conversation, task, answer=extraction.text, reference=task.reference
        )
        return Score(
            value=judged.value,
            reason=judged.reason,
            raw=extraction.raw + judged.raw,
            detail={**judged.detail, **detail, "method": "judge"},
        )


def answers_match(answer: str, reference: str) -> tuple[bool, str] | None:
    """``(equal, method)`` with method "exact" or "sympy"; None when a side cannot be parsed."""
    clean_answer, clean_reference = clean_answer_text(answer), clean_answer_text(reference)
    if _canonical(clean_answer) == _canonical(clean_reference):
        return True, "exact"
    parsed_answer, parsed_reference = parse_answer(answer), parse_answer(reference)
    if parsed_answer is None or parsed_reference is None:
        return None
    return equivalent(parsed_answer, parsed_reference), "sympy"


# ---------------------------------------------------------------- cleaning LaTeX answers

_UNICODE = {
    "−": "-",
    "–": "-",
    "×": "\\times ",
    "÷": "\\div ",
    "π": "\\pi ",
    "√": "\\sqrt",
    "∞": "\\infty ",
    "°": "",
    "\\$": "",
    "\\%": "%",
    "{,}": "",
    "\\dfrac": "\\frac",
    "\\tfrac": "\\frac",
    "\\left": "",
    "\\right": "",
}
_DRESSING = re.compile(
    r"\\displaystyle|\\[,;:! ]|\\q?quad|\$|\\\(|\\\)|\\\[|\\\]|\^\s*\{?\\circ\}?|\\degree"
)
_TEXT_CONNECTIVE = re.compile(r"\\(?:text|mbox|textrm|mathrm)\{\s*(?:or|and)\s*\}|\s+(?:or|and)\s+")
_TEXT_GROUP = re.compile(r"\\(?:text|mbox|textrm|mathrm|textbf)\{([^{}]*)\}(\^\{?\d\}?)?")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ROMAN_LETTER = re.compile(r"\\mathrm\{([A-Za-z])\}")  # \mathrm{e}: a constant, not a unit
_PREFIX = re.compile(r"(?i)^\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is\b)?\s*[:=]?\s*")
_TRAILING_UNIT = re.compile(r"^(.*[\d})])\s*(?!(?:pi|sqrt)\b)[A-Za-z]{2,}\.?$")


def _last_boxed(text: str) -> str | None:
    openings = list(_BOXED.finditer(text))
    if not openings:
        return None
    try:
        return _group(text, openings[-1].end() - 1)[0]
    except _Unparsable:
        return None


def clean_answer_text(text: str) -> str:
    """``text`` without the LaTeX dressing around an answer (see the module docstring)."""
    text = _last_boxed(text) or text
    for old, new in _UNICODE.items():
        text = text.replace(old, new)
    text = _TEXT_CONNECTIVE.sub(",", _DRESSING.sub("", _ROMAN_LETTER.sub(r"\1", text)))
    whole_text = _TEXT_GROUP.fullmatch(text.strip())
    text = whole_text.group(1) if whole_text else _TEXT_GROUP.sub("", text)
    text = _PREFIX.sub("", text).strip().rstrip(".").strip()
    unit = _TRAILING_UNIT.fullmatch(text)
    return unit.group(1).strip() if unit else text


def _canonical(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


# ---------------------------------------------------------------- LaTeX to sympy


class _Unparsable(ValueError):
    pass


def _command(s: str, i: int) -> tuple[str, int]:
    """The command name starting at backslash ``s[i]`` and the index after it."""
    j = i + 1
    while j < len(s) and s[j].isalpha():
        j += 1
    if j == i + 1:
        j = min(i + 2, len(s))
    return s[i + 1 : j], j


def _group(s: str, i: int) -> tuple[str, int]:
    """One argument at ``s[i]``: a ``{...}`` group, a ``\\command``, or one character."""
    while i < len(s) and s[i].isspace():
        i += 1
    if i >= len(s):
        raise _Unparsable("missing argument")
    if s[i] == "\\":
        end = _command(s, i)[1]
        return s[i:end], end
    if s[i] != "{":
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return s[i + 1 : j], j + 1
    raise _Unparsable("unbalanced braces")


_COMMANDS = {
    "pi": " pi ",
    "infty": " oo ",
    "cdot": "*",
    "times": "*",
    "ast": "*",
    "div": "/",
    "ln": " log ",
    "log": " log ",
    "exp": " exp ",
    "sin": " sin ",
    "cos": " cos ",
    "tan": " tan ",
    "circ": "",
}


def latex_to_python(s: str) -> str:
    """Translate the LaTeX of one answer into sympy-parsable text; raises on unknown commands."""
    out, i = [], 0
    while i < len(s):
        if s[i] != "\\":
            out.append({"{": "(", "[": "(", "}": ")", "]": ")", "^": "**"}.get(s[i], s[i]))
            i += 1
            continue
        name, i = _command(s, i)
        if name == "frac":
            numerator, i = _group(s, i)
            denominator, i = _group(s, i)
            out.append(f"(({latex_to_python(numerator)})/({latex_to_python(denominator)}))")
        elif name == "sqrt":
            root = None
            if s[i : i + 1] == "[":
                close = s.find("]", i)
                if close < 0:
                    raise _Unparsable("unclosed root index")
                root, i = s[i + 1 : close], close + 1
            radicand, i = _group(s, i)
            body = latex_to_python(radicand)
            out.append(
                f"sqrt({body})" if root is None else f"(({body})**(1/({latex_to_python(root)})))"
            )
        elif name in _COMMANDS:
            out.append(_COMMANDS[name])
        else:
            raise _Unparsable(f"unsupported command \\{name}")
    return "".join(out)


_FUNCTIONS = {
    "pi": sympy.pi,
    "oo": sympy.oo,
    "sqrt": sympy.sqrt,
    "log": sympy.log,
    "exp": sympy.exp,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
}
# In competition answers e is Euler's number and i the imaginary unit; both sides read them so.
_CONSTANTS = {"e": sympy.E, "i": sympy.I}
_GLOBALS = {"__builtins__": {}, **{k: getattr(sympy, k) for k in dir(sympy) if k[0] != "_"}}
_TRANSFORMS = (*standard_transformations, implicit_multiplication, implicit_application)
_SAFE_TEXT = re.compile(r"[0-9A-Za-z+\-*/().\s]{1,200}")
_PARSE_ERRORS = (
    SyntaxError,
    TypeError,
    ValueError,
    AttributeError,
    ZeroDivisionError,
    TokenError,
    sympy.SympifyError,
)


def _safe_exponents(py: str) -> bool:
    """No exponent may hold another exponent or a number over 4 digits."""
    for match in re.finditer(r"\*\*\s*", py):
        rest = py[match.end() :]
        exponent = re.match(r"[-+]?\s*\d+", rest)
        if rest.startswith("("):
            depth, end = 0, len(rest)
            for j, ch in enumerate(rest):
                depth += {"(": 1, ")": -1}.get(ch, 0)
                if depth == 0:
                    end = j
                    break
            exponent_text = rest[:end]
            if "**" in exponent_text:
                return False
        else:
            exponent_text = exponent.group() if exponent else ""
        if any(len(digits) > 4 for digits in re.findall(r"\d+", exponent_text)):
            return False
    return True


def parse_expression(py: str) -> sympy.Expr | None:
    """Parse whitelisted, sympy-parsable text unevaluated; None when it is not allowed or fails."""
    names = set(re.findall(r"[A-Za-z]+", py))
    if (
        not _SAFE_TEXT.fullmatch(py)
        or re.search(r"[A-Za-z]\s*\.|\.\s*[A-Za-z]", py)
        or any(len(n) > 1 and n not in _FUNCTIONS for n in names)
        or not _safe_exponents(py)
    ):
        return None
    symbols = {n: sympy.Symbol(n) for n in names if len(n) == 1}
    try:
        expr = parse_expr(
            py,
            local_dict={**symbols, **_CONSTANTS, **_FUNCTIONS},
            global_dict=_GLOBALS,
            transformations=_TRANSFORMS,
            evaluate=False,
        )
    except _PARSE_ERRORS:
        return None
    return expr if isinstance(expr, sympy.Expr) else None


# ---------------------------------------------------------------- structured answers


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer as a list of values; each value has alternatives (a percentage has two).

    ``brackets`` is "" for a single value or a bare list, "set" for ``\\{...\\}``, else the
    enclosing pair of a tuple or interval, e.g. "()" or "[)".
    """

    brackets: str
    items: tuple[tuple[sympy.Expr, ...], ...]


_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ASSIGNMENT = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=(?!=)\s*")
_MIXED_NUMBER = re.compile(r"(-?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")


def _split_top_level(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for j, ch in enumerate(s):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(s[start:j].strip())
            start = j + 1
    return [*parts, s[start:].strip()]


def _encloses(s: str) -> bool:
    depth = 0
    for j, ch in enumerate(s):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if depth == 0 and j < len(s) - 1:
            return False
    return depth == 0


def _split_collection(text: str) -> tuple[str, list[str]]:
    if text.startswith("\\{") and text.endswith("\\}"):
        return "set", _split_top_level(text[2:-2])
    if len(text) > 1 and text[0] in "([" and text[-1] in ")]" and _encloses(text):
        items = _split_top_level(text[1:-1])
        if len(items) > 1:
            return text[0] + text[-1], items
    if _THOUSANDS.fullmatch(text):
        return "", [text.replace(",", "")]
    return "", _split_top_level(text)


def _parse_value(text: str) -> tuple[sympy.Expr, ...] | None:
    text = _ASSIGNMENT.sub("", text, count=1).strip()
    percent = text.endswith("%")
    text = text.rstrip("%").strip()
    mixed = _MIXED_NUMBER.fullmatch(text)
    if mixed:
        sign, whole, numerator, denominator = mixed.groups()
        text = f"{sign}({whole}+{numerator}/{denominator})"
    try:
        expr = parse_expression(latex_to_python(text))
    except _Unparsable:
        return None
    if expr is None:
        return None
    return (expr, expr / 100) if percent else (expr,)


def parse_answer(text: str) -> ParsedAnswer | None:
    """The answer in ``text`` as values, or None when any part cannot be parsed."""
    brackets, parts = _split_collection(clean_answer_text(text))
    values = [_parse_value(part) for part in parts]
    if not parts or any(v is None for v in values):
        return None
    return ParsedAnswer(brackets, tuple(values))  # type: ignore[arg-type]


# ---------------------------------------------------------------- equivalence

_POINTS = (0.5772156649, 1.4142135624, 2.7182818285, 0.3183098862, 1.6180339887)


def _close_at(a: sympy.Expr, b: sympy.Expr, subs: dict) -> bool | None:
    """Whether a and b agree numerically at ``subs`` (None: not finite numbers there).

    Computed in sympy Floats, whose exponent range is unbounded, so 10^(10^6) is no overflow."""
    try:
        va, vb = a.evalf(30, subs=subs), b.evalf(30, subs=subs)
        if not all(v.is_number and v.is_finite for v in (va, vb)):
            return None
        return bool(sympy.Abs(va - vb) <= 1e-9 * sympy.Max(1, sympy.Abs(va), sympy.Abs(vb)))
    except (TypeError, ValueError):
        return None


def _simplifiable(difference: sympy.Expr) -> bool:
    """Small enough for ``simplify`` to finish quickly: few operations, no big powers."""
    powers = difference.atoms(sympy.Pow)
    return sympy.count_ops(difference) <= 40 and all(
        not p.exp.is_Number or abs(p.exp) <= 100 for p in powers
    )


def same_value(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Numeric equality (symbols evaluated at fixed points), then ``simplify`` for the rest."""
    if a == b:
        return True
    difference = a - b
    symbols = sorted(difference.free_symbols, key=str)
    points = [
        {s: _POINTS[(k + i) % len(_POINTS)] for i, s in enumerate(symbols)}
        for k in range(3 if symbols else 1)
    ]
    verdicts = [v for v in (_close_at(a, b, p) for p in points) if v is not None]
    if verdicts:
        return all(verdicts)
    return _simplifiable(difference) and sympy.simplify(difference) == 0


def _items_match(x: tuple[sympy.Expr, ...], y: tuple[sympy.Expr, ...]) -> bool:
    return any(same_value(a, b) for a in x for b in y)


def equivalent(answer: ParsedAnswer, reference: ParsedAnswer) -> bool:
    """Same number of values; in order for tuples/intervals, in any order for sets and lists."""
    if len(answer.items) != len(reference.items):
        return False
    kinds = {answer.brackets, reference.brackets}
    if kinds <= {"", "set"}:
        unmatched = list(reference.items)
        for item in answer.items:
            match = next((r for r in unmatched if _items_match(item, r)), None)
            if match is None:
                return False
            unmatched.remove(match)
        return True
    if len(kinds - {""}) > 1:
        return False
    return all(_items_match(a, r) for a, r in zip(answer.items, reference.items))
