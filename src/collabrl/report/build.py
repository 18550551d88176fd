"""Assemble the report: the template with its CSS, JS and the data inlined, in one HTML file.

A report is mailed around, attached to issues and opened from disk years later, so it must not
depend on anything outside itself: the stylesheet and scripts are inlined, and the data goes in a
``<script type="application/json">`` element. Inside that element only ``</script`` (or
``<!--``) could end it early, so every ``<``, ``>`` and ``&`` in the JSON is written as a
``\\u00XX`` escape, which JSON.parse turns back into the same text. The page opens on the
headline result of the first evaluation run among the folders (``data.headline``).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from collabrl import __version__
from collabrl.progress import StageProgress
from collabrl.records import write_atomic
from collabrl.report.data import load_run

SCRIPTS = ("dom.js", "plots.js", "browser.js", "report.js")
PLACEHOLDER = re.compile(r"\{\{(CSS|JS|DATA)\}\}")
_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def embed_json(data: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


def _asset(name: str) -> str:
    return (files("collabrl.report") / name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    """The report page for ``data`` (the ``report_data`` dict)."""
    parts = {
        "CSS": _asset("report.css"),
        "JS": "\n".join(_asset(name) for name in SCRIPTS),
        "DATA": embed_json(data),
    }
    # One pass: text inserted for one placeholder is never searched for another.
    return PLACEHOLDER.sub(lambda m: parts[m.group(1)], _asset("template.html"))


def report_data(
    run_dirs: Sequence[str | Path],
    title: str = "collabrl report",
    progress: StageProgress | None = None,
) -> dict[str, Any]:
    """What the page shows: every run, and the headline of the first evaluation run."""
    runs = []
    for folder in run_dirs:
        runs.append(load_run(folder))
        if progress is not None:
            progress.advance()
    first_eval = next((run for run in runs if run["kind"] == "eval" and run["headline"]), None)
    return {
        "title": title,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "headline": first_eval and {"run": first_eval["name"], "charts": first_eval["headline"]},
        "runs": runs,
    }


def build_report(
    run_dirs: Sequence[str | Path],
    output: str | Path,
    title: str = "collabrl report",
    progress: StageProgress | None = None,
) -> Path:
    """Write the report for ``run_dirs`` to ``output`` (atomically); returns its path.
    ``progress`` advances once per run folder read."""
    output = Path(output)
    write_atomic(output, [render_html(report_data(run_dirs, title, progress))])
    return output
