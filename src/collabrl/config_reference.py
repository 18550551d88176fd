"""The config reference: Markdown tables of every config key, generated from ``collabrl.config``.

Each key is documented from the pydantic field that defines it (type, default, description), so
the reference cannot drift from the code: ``collabrl config reference --write README.md``
rewrites the part of README.md between the markers, and a test fails when the two differ.
Sections become tables of dotted keys; a role's backend fields come once for every kind, then
per kind; models inside lists (a metric, a task source, ...) get one table each; the metrics'
options come from the metric registry.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from collabrl.config import Config
from collabrl.metrics.registry import metric_options

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
WRITE_COMMAND = "collabrl config reference --write README.md"

_NAMES = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    Path: "path",
    type(None): "null",
    Any: "any",
}
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))  # as pydantic names them


@dataclass
class _Table:
    title: str
    intro: str
    depth: int
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)


# --- types -------------------------------------------------------------------------------------


def _bare(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a union; any other type is its own single alternative."""
    tp = _bare(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(_bare(arg) for arg in get_args(tp))
    return (tp,)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _braces(model: type[BaseModel]) -> str:
    return "{" + ", ".join(model.model_fields) + "}"


def _type_text(tp: Any) -> str:
    """``int``, ``"a" | "b"``, ``list of {name, weight}``, ``path | null``, ..."""
    members = _members(tp)
    if len(members) > 1:
        return " | ".join(_type_text(m) for m in members)
    tp = members[0]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (list, tuple):
        item = _type_text(args[0])
        return f"list of ({item})" if " | " in item else f"list of {item}"
    if origin is dict:
        return "mapping" if args[1] is Any else f"mapping of str to {_type_text(args[1])}"
    if _is_model(tp):
        return _braces(tp)
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _number(value: float) -> str:
    text = f"{value:g}"
    return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text


def _bounds(info: FieldInfo) -> str:
    """`` >= 1``, `` in [0, 1)``, ... from the field's constraints ('' when it has none)."""
    found = {
        name: (op, getattr(item, name))
        for item in info.metadata
        for name, op in _BOUNDS
        if getattr(item, name, None) is not None
    }
    low, high = found.get("ge") or found.get("gt"), found.get("le") or found.get("lt")
    if low and high:
        opening, closing = ("[" if "ge" in found else "("), ("]" if "le" in found else ")")
        return f" in {opening}{_number(low[1])}, {_number(high[1])}{closing}"
    bound = low or high
    return f" {bound[0]} {_number(bound[1])}" if bound else ""


def _field_type(info: FieldInfo) -> str:
    bounds = _bounds(info)
    if not bounds:
        return _type_text(info.annotation)
    values = [m for m in _members(info.annotation) if m is not type(None)]
    nullable = len(values) < len(_members(info.annotation))
    return " | ".join(_type_text(m) + bounds for m in values) + (" | null" if nullable else "")


def _models_within(tp: Any) -> list[type[BaseModel]]:
    """Models nested in a type (inside lists, unions, mappings), in order of appearance."""
    tp = _bare(tp)
    if _is_model(tp):
        return [tp]
    return [model for arg in get_args(tp) for model in _models_within(arg)]


def _sub_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a field that is a section (``Model`` or ``Model | None``), else None."""
    values = [m for m in _members(info.annotation) if m is not type(None)]
    return values[0] if len(values) == 1 and _is_model(values[0]) else None


def _mapping_of_models(info: FieldInfo) -> tuple[tuple[type[BaseModel], ...], str | None] | None:
    """For ``dict[str, Model]`` or a dict of a discriminated union of models: (models, tag)."""
    tp = _bare(info.annotation)
    if get_origin(tp) is not dict:
        return None
    value = get_args(tp)[1]
    models = _members(value)
    if not all(_is_model(m) for m in models):
        return None
    tags = [m.discriminator for m in getattr(value, "__metadata__", ()) if isinstance(m, FieldInfo)]
    return models, (tags[0] if tags else None)


# --- values and text ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value


def _flow(value: Any) -> str:
    """A value as one line of YAML, as it would be written in a config file."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        unsafe = not value or any(c in value for c in ",[]{}#") or yaml.safe_load(value) != value
        return json.dumps(value) if unsafe else value
    return str(value)


def _doc(model: type[BaseModel]) -> str:
    """The first paragraph of a model's docstring, on one line, with Markdown code spans."""
    paragraph = (model.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def _sentence(text: str | None) -> str:
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _join(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_of(info: FieldInfo) -> Any:
    """The field's default (factories called), or ``PydanticUndefined`` when it is required."""
    return info.get_default(call_default_factory=True)


def _same_field(a: FieldInfo | None, b: FieldInfo) -> bool:
    return a is not None and (repr(a.annotation), a.metadata, a.description) == (
        repr(b.annotation),
        b.metadata,
        b.description,
    )


def _tag_value(model: type[BaseModel], tag: str) -> str:
    return get_args(model.model_fields[tag].annotation)[0]


def _leaves(info: FieldInfo, key: str, value: Any = PydanticUndefined) -> list:
    """(key, field, default) of a field, or of every field inside it when it is a section."""
    value = _default_of(info) if value is PydanticUndefined else value
    model = _sub_model(info)
    if model is None or not isinstance(value, BaseModel):
        return [(key, info, value)]
    return [
        leaf
        for name, sub in model.model_fields.items()
        for leaf in _leaves(sub, f"{key}.{name}", getattr(value, name))
    ]


# --- walking the models ------------------------------------------------------------------------


class _Reference:
    """Walks the config models depth first, collecting one table per section."""

    def __init__(self) -> None:
        self.tables: list[_Table] = []
        self.entries: dict[type[BaseModel], list[str]] = {}

    def section(
        self,
        model: type[BaseModel],
        key: str,
        table: _Table,
        names: list[str] | None = None,
        values: BaseModel | None = None,
    ) -> None:
        """Rows for ``model``'s fields (or only ``names``) into ``table``, then its sections.

        ``values``: the section's default, an instance whose values are its fields' defaults
        (which may differ from the model's own defaults).
        """
        self.tables.append(table)
        later = []
        for name in names if names is not None else model.model_fields:
            info = model.model_fields[name]
            dotted = f"{key}.{name}" if key else name
            value = _default_of(info) if values is None else getattr(values, name)
            if _sub_model(info) or _mapping_of_models(info):
                later.append((dotted, info, value))
            else:
                table.rows.append(self.row(dotted, info, value))
        for dotted, info, value in later:
            self.nested(dotted, info, value, table.depth + 1)

    def row(self, dotted: str, info: FieldInfo, value: Any) -> tuple[str, str, str, str]:
        for model in _models_within(info.annotation):
            used = self.entries.setdefault(model, [])
            used += [] if dotted in used else [dotted]
        default = "required" if value is PydanticUndefined else f"`{_flow(_plain(value))}`"
        return f"`{dotted}`", f"`{_field_type(info)}`", default, info.description or ""

    def nested(self, dotted: str, info: FieldInfo, value: Any, depth: int) -> None:
        model = _sub_model(info)
        if model is not None:
            null = "Default: `null`." if value is None else ""
            intro = _join(_doc(model), _sentence(info.description), null)
            values = value if isinstance(value, BaseModel) else None
            self.section(model, dotted, _Table(f"`{dotted}`", intro, depth), values=values)
        else:
            models, tag = _mapping_of_models(info)
            self.kinds(models, tag, f"{dotted}.<name>", _sentence(info.description), depth)

    def kinds(
        self, models: tuple[type[BaseModel], ...], tag: str | None, key: str, intro: str, depth: int
    ) -> None:
        """A mapping's values: the fields every kind shares once, then each kind's own."""
        if tag is None:
            self.section(models[0], key, _Table(f"`{key}`", intro, depth))
            return
        first = models[0]
        shared = [
            n
            for n in first.model_fields
            if n != tag
            and all(_same_field(m.model_fields.get(n), first.model_fields[n]) for m in models)
        ]
        values = " | ".join(json.dumps(_tag_value(m, tag)) for m in models)
        every = (
            f"Every `{tag}` takes these fields; each {tag}'s own fields follow, with the"
            " defaults it changes."
        )
        table = _Table(f"`{key}`", _join(intro, every), depth)
        table.rows.append((f"`{key}.{tag}`", f"`{values}`", "required", f"picks the {tag} below"))
        self.section(first, key, table, shared)
        for model in models:
            own = [n for n in model.model_fields if n not in shared and n != tag]
            title = f"`{key}` with `{tag}: {_tag_value(model, tag)}`"
            own_table = _Table(title, _doc(model), depth + 1)
            self.section(model, key, own_table, own)
            own_table.rows += self.changed_defaults(model, first, shared, key)

    def changed_defaults(
        self, model: type[BaseModel], first: type[BaseModel], shared: list[str], key: str
    ) -> list[tuple[str, str, str, str]]:
        """Rows for the shared fields (and their sub-fields) whose default ``model`` changes."""
        rows = []
        for name in shared:
            theirs = {k: v for k, _, v in _leaves(first.model_fields[name], f"{key}.{name}")}
            rows += [
                self.row(k, info, v)
                for k, info, v in _leaves(model.model_fields[name], f"{key}.{name}")
                if k not in theirs or theirs[k] != v
            ]
        return rows

    def list_entries(self) -> None:
        """One table per model used inside a list or union, named by its fields."""
        done: set[type[BaseModel]] = set()
        while pending := [m for m in self.entries if m not in done]:
            model = pending[0]
            done.add(model)
            used = ", ".join(f"`{key}`" for key in self.entries[model])
            intro = _join(_doc(model), f"Used in {used}.")
            self.section(model, "", _Table(f"`{_braces(model)}`", intro, 1))


# --- rendering ---------------------------------------------------------------------------------


def _table_text(table: _Table) -> str:
    lines = ["#" * (2 + table.depth) + " " + table.title, ""]
    if table.intro:
        lines += [table.intro, ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _metrics_text() -> str:
    lines = [
        "### Metric options",
        "",
        "The `options` of a metric entry, by metric `name`, with their defaults:",
        "",
        "| metric | options |",
        "|---|---|",
    ]
    for name, options in metric_options().items():
        listed = ", ".join(f"`{k}: {_flow(v)}`" for k, v in options.items()) or "none"
        lines.append(f"| `{name}` | {_cell(listed)} |")
    return "\n".join(lines)


def render() -> str:
    """The whole reference as Markdown: every section of ``Config``, list entries, metrics."""
    reference = _Reference()
    reference.section(Config, "", _Table("", "", 0))
    reference.list_entries()
    tables = [_table_text(t) for t in reference.tables if t.rows]
    return "\n\n".join([*tables, _metrics_text()]) + "\n"


def replace_section(text: str, body: str) -> str:
    """``text`` with what lies between the reference markers replaced by ``body``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"needs the markers {START} and {END} (in this order) around it")
    return f"{text[:start]}{START}\n\n{body.strip()}\n\n{text[end:]}"
