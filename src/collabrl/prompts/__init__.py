"""Prompt templates as data: ``prompts/*.md`` files with ``$placeholders``.

Templates use ``string.Template`` syntax (``$name`` / ``${name}``) so that JSON examples and
braces in a prompt need no escaping. A missing value raises instead of leaving a hole.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from string import Template


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.md``."""
    path = files(__package__).joinpath(f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template named {name!r} in collabrl/prompts")
    return path.read_text(encoding="utf-8")


def render_prompt(name: str, **values: object) -> str:
    """``prompts/<name>.md`` with every ``$placeholder`` filled; raises KeyError on a missing one."""
    try:
        return Template(load_prompt(name)).substitute({k: str(v) for k, v in values.items()})
    except KeyError as missing:
        raise KeyError(f"prompt {name!r} needs a value for {missing}") from None
