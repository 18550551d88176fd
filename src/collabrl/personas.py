"""Personas for the simulated user: who is asking, not only what they want.

A task fixes the hidden goal; a persona fixes the person holding it: their expertise, patience,
verbosity, how much of the goal they volunteer (``disclosure``) and their writing style, each a
short line of prose, plus any free-form fields a persona file adds. Assistants that only serve
one kind of user (patient, articulate, forthcoming) look better than they are; tau2-bench gives
its simulated users personas for the same reason.

A persona file is YAML (a list of mappings) or JSONL (one mapping a line); ``default`` names the
set that ships in ``tasks/data/personas.yaml``. Each conversation meets one persona, picked from
(task id, seed) alone: the task's stable offset plus the seed, modulo the set's size. Reruns and
the response cache agree, every system under evaluation meets the same person for the same
(task, seed), and a task's seeds meet different personas while there are personas left.
The chosen persona travels with the task (``task.metadata["persona"]``), so the simulator of a
conversation and of its sampled futures play the same person, and records copy it from there.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collabrl.config import ConfigError
from collabrl.prompts import render_prompt
from collabrl.types import Task

DEFAULT = "default"
METADATA_KEY = "persona"
TRAIT_LABELS = {
    "expertise": "Expertise",
    "patience": "Patience",
    "verbosity": "Verbosity",
    "disclosure": "How much you volunteer",
    "style": "Writing style",
}


class Persona(BaseModel):
    """One simulated person. Every trait is prose the simulator reads; extra fields are allowed
    (numbers, text or flags) and rendered after the known ones."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(
        min_length=1, description="unique within its file; used in records and tables"
    )
    summary: str = Field(min_length=1, description="who this person is, in a sentence or two")
    expertise: str | None = Field(default=None, description="what they know about the subject")
    patience: str | None = Field(default=None, description="how long they put up with questions")
    verbosity: str | None = Field(default=None, description="how much they write per message")
    disclosure: str | None = Field(default=None, description="how much of the goal they volunteer")
    style: str | None = Field(default=None, description="how they write: tone, spelling, format")

    def traits(self) -> dict[str, str]:
        """Every trait but the name and summary, known ones first, as label -> text."""
        known = {TRAIT_LABELS[k]: v for k, v in self if k in TRAIT_LABELS and v is not None}
        extra = {
            k.replace("_", " ").capitalize(): str(v) for k, v in (self.model_extra or {}).items()
        }
        return {**known, **extra}

    def record(self) -> dict[str, Any]:
        """The persona as it is written into records: its name and every attribute it has."""
        return self.model_dump(mode="json", exclude_none=True)


class PersonaSet:
    """The personas of one file, and the deterministic pick for (task id, seed)."""

    def __init__(self, personas: list[Persona], source: str) -> None:
        if not personas:
            raise ConfigError(f"personas file {source}: it holds no personas")
        self.personas = personas
        self.source = source

    def pick(self, task_id: str, seed: int) -> Persona:
        """The persona of conversation ``seed`` of task ``task_id`` (see the module docstring)."""
        offset = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big")
        return self.personas[(offset + seed) % len(self.personas)]

    def cast(self, task: Task, seed: int) -> Task:
        """``task`` with its persona for ``seed`` attached (``metadata["persona"]``)."""
        persona = self.pick(task.id, seed).record()
        return task.model_copy(update={"metadata": {**task.metadata, METADATA_KEY: persona}})


def cast(task: Task, personas: PersonaSet | None, seed: int) -> Task:
    """``task`` with its persona for ``seed``, or unchanged when no personas are configured."""
    return task if personas is None else personas.cast(task, seed)


def persona_of(task: Task) -> dict[str, Any] | None:
    """The persona record attached to ``task`` (``PersonaSet.cast``), or None."""
    persona = task.metadata.get(METADATA_KEY)
    return persona if isinstance(persona, dict) else None


def persona_block(task: Task) -> str:
    """The simulator prompt's persona section for ``task``; "" when it has no persona."""
    record = persona_of(task)
    if record is None:
        return ""
    persona = Persona.model_validate(record)
    traits = "\n".join(f"- {label}: {text}" for label, text in persona.traits().items())
    return render_prompt(
        "user_simulator_persona",
        summary=persona.summary.strip(),
        traits=traits or "- (no further traits)",
    )


def load_personas(spec: str | Path | None) -> PersonaSet | None:
    """The set named by ``user.personas``: None (no personas), ``default`` or a file path."""
    if spec is None:
        return None
    if str(spec) == DEFAULT:
        resource = files("collabrl").joinpath("tasks/data/personas.yaml")
        return parse_personas(
            resource.read_text(encoding="utf-8"), "default (tasks/data/personas.yaml)", ".yaml"
        )
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"user.personas: cannot read {path}: {error.strerror}") from None
    return parse_personas(text, str(path), path.suffix.lower())


def parse_personas(text: str, source: str, suffix: str) -> PersonaSet:
    """Personas from the text of a YAML or JSONL file; errors name ``source`` and the entry."""
    entries = _jsonl_entries(text, source) if suffix == ".jsonl" else _yaml_entries(text, source)
    personas, names = [], set()
    for number, entry in enumerate(entries, start=1):
        where = f"personas file {source}, entry {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping of fields, got {type(entry).__name__}")
        try:
            persona = Persona.model_validate(entry)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(map(str, first["loc"])) or "(entry)"
            raise ConfigError(f"{where}: field {field!r}: {first['msg']}") from None
        for key, value in (persona.model_extra or {}).items():
            if not isinstance(value, str | int | float | bool):
                raise ConfigError(
                    f"{where}: field {key!r}: extra fields hold text, numbers or flags"
                )
        if persona.name in names:
            raise ConfigError(f"{where}: the name {persona.name!r} is used twice")
        names.add(persona.name)
        personas.append(persona)
    return PersonaSet(personas, source)


def _yaml_entries(text: str, source: str) -> list[Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"personas file {source}: not valid YAML: {error}") from None
    if not isinstance(data, list):
        raise ConfigError(f"personas file {source}: expected a list of personas at the top level")
    return data


def _jsonl_entries(text: str, source: str) -> list[Any]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"personas file {source}, line {number}: not JSON: {error.msg}"
                ) from None
    return entries
