"""User code by reference: ``module:attribute`` names in configs and installed entry points.

Wherever a config names a metric, a task set, a judge or a user simulator, the name is looked up
in three places, in this order: the built-in entries of that kind; a ``module:attribute``
reference (``my_pkg.metrics:Politeness``, imported from ``sys.path``, so a file next to the
config works after ``PYTHONPATH=.``); an entry point in the group ``collabrl.<kind>`` of an
installed package (``[project.entry-points."collabrl.metrics"] politeness = "my_pkg:Politeness"``).
A reference that cannot be loaded is an error that names it and says why; nothing falls back.

What each kind's name must point to is defined where that kind is built: a metric factory
``(options, tools) -> Metric`` (``collabrl.metrics.registry``), a ``TaskSet``
(``collabrl.tasks.registry``), a ``JudgePrompt`` (``collabrl.metrics.prompt_judge``) and a user
factory ``(config, roles)`` (``collabrl.assembly.build_simulator``); the README's "Plugins"
section shows all four, and ``examples/plugin/`` is a package with one of each.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Literal, TypeVar

PluginKind = Literal["metrics", "tasks", "judges", "users"]
PLUGIN_KINDS: tuple[PluginKind, ...] = ("metrics", "tasks", "judges", "users")
# How errors name one plugin of each kind, and several.
NOUNS: dict[PluginKind, tuple[str, str]] = {
    "metrics": ("metric", "metrics"),
    "tasks": ("task set", "task sets"),
    "judges": ("judge", "judges"),
    "users": ("user simulator", "user simulators"),
}
T = TypeVar("T")


class PluginError(ValueError):
    """A plugin reference that cannot be resolved; the message names the reference."""


def entry_point_group(kind: PluginKind) -> str:
    """The entry-point group installed packages register ``kind`` plugins under."""
    return f"collabrl.{kind}"


def is_reference(name: str) -> bool:
    """True for a ``module:attribute`` reference rather than a plain name."""
    return ":" in name


def load_reference(reference: str) -> object:
    """The object a ``module:attribute`` reference names (``attribute`` may be dotted)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"{reference!r}: a reference is written module:attribute")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import-time failure of user code
        raise PluginError(
            f"{reference!r}: cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise PluginError(f"{reference!r}: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def installed(kind: PluginKind) -> dict[str, EntryPoint]:
    """The entry points installed packages register for ``kind``, by name."""
    return {ep.name: ep for ep in entry_points(group=entry_point_group(kind))}


def _load_entry_point(kind: PluginKind, entry: EntryPoint) -> object:
    try:
        return entry.load()
    except Exception as error:  # noqa: BLE001 - any import-time failure of user code
        raise PluginError(
            f"{NOUNS[kind][0]} entry point {entry.name!r} ({entry.value}, package "
            f"{entry.dist.name if entry.dist else '?'}): cannot load: "
            f"{type(error).__name__}: {error}"
        ) from None


def resolve(kind: PluginKind, name: str, builtins: Mapping[str, T]) -> T | object:
    """The ``kind`` plugin called ``name``: a built-in entry, a ``module:attribute`` reference,
    or an installed entry point, in that order; an unknown name lists the known ones."""
    if name in builtins:
        return builtins[name]
    if is_reference(name):
        return load_reference(name)
    entries = installed(kind)
    if name in entries:
        return _load_entry_point(kind, entries[name])
    one, several = NOUNS[kind]
    known = ", ".join(known_names(kind, builtins)) or "none"
    raise PluginError(
        f"unknown {one} {name!r}; known {several}: {known}; or give user code as "
        f"module:attribute, or install a package with a "
        f"{entry_point_group(kind)!r} entry point"
    )


def known_names(kind: PluginKind, builtins: Mapping[str, object]) -> tuple[str, ...]:
    """Built-in names, then the names installed packages add."""
    return (*builtins, *sorted(set(installed(kind)) - set(builtins)))
