"""The user-study config: systems under test, writing tasks, rating schedule, participants.

A study config is its own YAML file (``configs/study.yaml``), validated by ``StudyConfig`` with
the same error format as the main config (``study.rating_every: Input should be greater than
0``). Systems are bound to backends exactly as everywhere else in collabrl: ``roles`` maps a
role name to a backend config (scripted, OpenAI-compatible such as a vLLM server with a trained
checkpoint, Anthropic, a local transformers model), and each system names a role plus an
optional system prompt. Participants only ever see a system's neutral label, never its name.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from collabrl.config import (
    BackendConfig,
    EvalSystem,
    StrictModel,
    TaskSource,
    load_model_config,
)

FINAL_RATINGS = ("document", "interaction", "engagement")


class StudyLimits(StrictModel):
    """What one participant may send; larger requests are refused with 413/429."""

    max_message_chars: int = Field(default=4000, ge=1, description="one chat message")
    max_document_chars: int = Field(default=20000, ge=1, description="the final document")
    max_request_bytes: int = Field(default=200_000, ge=1024, description="any request body")
    messages_per_minute: float = Field(default=12, gt=0, description="per participant")
    message_burst: int = Field(default=4, ge=1, description="messages allowed back to back")


class StudyConfig(StrictModel):
    """The root of a ``collabrl study`` config file."""

    title: str = "Co-writing study"
    roles: dict[str, BackendConfig] = Field(description="role name -> backend, as in every config")
    systems: list[EvalSystem] = Field(min_length=1, description="the systems under test")
    tasks: TaskSource = Field(description="the writing briefs participants work on")
    participants: int = Field(default=20, ge=1, description="links `study invite` creates")
    systems_per_participant: int = Field(
        default=1, ge=1, description="systems each participant works with, in counterbalanced order"
    )
    rating_every: int = Field(default=3, ge=1, description="ask for a 1-10 rating every N turns")
    min_turns: int = Field(default=1, ge=0, description="assistant replies before one may finish")
    max_turns: int = Field(default=20, ge=1, description="assistant replies per session")
    database: str = Field(
        default="sqlite:///runs/study/study.sqlite", description="any SQLAlchemy database URL"
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="where participants reach the app (links)"
    )
    admin_token_env: str = Field(
        default="COLLABRL_STUDY_ADMIN_TOKEN",
        description="NAME of the variable with the admin token",
    )
    admin_session_hours: float = Field(
        default=12,
        gt=0,
        description="how long an admin login lasts before the token must be entered again",
    )
    limits: StudyLimits = StudyLimits()

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        names = [s.name for s in self.systems]
        if len(names) != len(set(names)):
            raise ValueError(f"system names must be unique, got {names}")
        for system in self.systems:
            if system.role not in self.roles:
                raise ValueError(
                    f"system {system.name!r} uses role {system.role!r}, which roles does not define"
                )
        if self.systems_per_participant > len(self.systems):
            raise ValueError(
                f"systems_per_participant ({self.systems_per_participant}) exceeds "
                f"the number of systems ({len(self.systems)})"
            )
        if self.min_turns > self.max_turns:
            raise ValueError("min_turns must not exceed max_turns")
        return self


def load_study_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Read a study YAML file, apply ``key=value`` overrides, validate."""
    return load_model_config(StudyConfig, path, overrides)
