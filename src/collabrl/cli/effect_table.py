"""The effect of training on the console: eval's ``summary.json`` as rich tables.

Per task metric: one row per system with every figure the summary has (task success, turns,
tokens, ... each a mean with its 95% interval), then the paired differences against the first
system, an interval that excludes 0 in colour. It reads the figures from the summary itself
(any key holding ``{mean, low, high}``), so a figure added to ``collabrl.evaluate.FIGURES``
shows up here without a change.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from collabrl.evaluate import METRIC_LABELS
from collabrl.report.data import FIGURE_DIGITS, FIGURE_LABELS

HEADLINE = "score"


def figure_names(group: dict[str, Any]) -> list[str]:
    """The figures of one task-metric group that some system has a value for, in the summary's
    order (a figure nobody could score, e.g. ITR without a judge, would be a column of dashes)."""
    names: dict[str, None] = {}
    for figures in group["systems"].values():
        names.update(
            {
                name: None
                for name, value in figures.items()
                if f"{name}_unscored" in figures and value and "mean" in value
            }
        )
    return list(names)


def label(figure: str) -> str:
    return FIGURE_LABELS.get(figure, figure.replace("_", " "))


def column_digits(group: dict[str, Any], figures: list[str]) -> dict[str, int]:
    """Per figure, the decimals its column shows: the known figures' own, else two for small
    numbers and one when any system's value reaches 10 (percentages)."""
    digits = {}
    for name in figures:
        if name in FIGURE_DIGITS:
            digits[name] = FIGURE_DIGITS[name]
            continue
        values = [
            abs(e[key])
            for f in group["systems"].values()
            if (e := f.get(name))
            for key in ("mean", "low", "high")
        ]
        digits[name] = 2 if all(v < 10 for v in values) else 1
    return digits


def estimate_text(
    estimate: dict[str, Any] | None, digits: int, signed: bool = False, separator: str = "\n"
) -> str:
    """``mean`` and, after ``separator`` (a new line in the tables), ``[low, high]``."""
    if not estimate:
        return "-"
    sign = "+" if signed else ""
    return (
        f"{estimate['mean']:{sign}.{digits}f}{separator}"
        f"[{estimate['low']:{sign}.{digits}f}, {estimate['high']:{sign}.{digits}f}]"
    )


def difference_text(diff: dict[str, Any], digits: int, separator: str = "\n") -> Text:
    """A paired difference, green/red when its interval excludes 0, dim when it does not."""
    style = "dim" if diff["within_noise"] else ("green" if diff["mean"] > 0 else "red")
    return Text(estimate_text(diff, digits, signed=True, separator=separator), style=style)


def systems_table(
    title: str, group: dict[str, Any], figures: list[str], digits: dict[str, int]
) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("system")
    table.add_column("n", justify="right")
    for name in figures:
        table.add_column(label(name), justify="right")
    for system, values in group["systems"].items():
        cells = [estimate_text(values.get(name), digits[name]) for name in figures]
        table.add_row(system, str(values["conversations"]), *cells)
    return table


def paired_table(group: dict[str, Any], figures: list[str], digits: dict[str, int]) -> Table | None:
    if not group["paired"]:
        return None
    base = group["paired"][0]["b"]
    table = Table(
        title=f"Paired differences vs {base} (same tasks and seeds, 95% interval)",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("system")
    for name in figures:
        table.add_column(label(name), justify="right")
    by_system: dict[str, dict[str, dict]] = {}
    for diff in group["paired"]:
        by_system.setdefault(diff["a"], {})[diff["figure"]] = diff
    for system, diffs in by_system.items():
        cells = [
            difference_text(d, digits[n]) if (d := diffs.get(n)) else Text("-") for n in figures
        ]
        table.add_row(f"{system} - {base}", *cells)
    return table


def headline(summary: dict[str, Any]) -> list[Text]:
    """One line per (task metric, system): the headline figure's difference against the base."""
    lines = []
    for group_name, group in summary.items():
        digits = column_digits(group, [HEADLINE])[HEADLINE]
        for diff in group["paired"]:
            if diff["figure"] != HEADLINE:
                continue
            verdict = (
                "within noise"
                if diff["within_noise"]
                else "interval above 0"
                if diff["low"] > 0
                else "interval below 0"
            )
            lines.append(
                Text.assemble(
                    f"{METRIC_LABELS.get(group_name, group_name)} (%): {diff['a']} - {diff['b']} = ",
                    difference_text(diff, digits, " "),
                    f" ({verdict})",
                )
            )
    return lines


def effect_tables(summary: dict[str, Any]) -> Group:
    """The headline lines, then per task metric the systems table and the paired differences."""
    parts: list[Any] = headline(summary)
    for group_name, group in summary.items():
        figures = figure_names(group)
        digits = column_digits(group, figures)
        title = (
            f"Eval on held-out tasks: {METRIC_LABELS.get(group_name, group_name)} (95% intervals)"
        )
        parts.append(systems_table(title, group, figures, digits))
        paired = paired_table(group, figures, digits)
        if paired is not None:
            parts.append(paired)
    return Group(*parts)
