"""A judge plugin: a prompt template and its grade scale (``JudgePrompt``).

The built-in metric ``llm_judge`` runs it (``{name: llm_judge, options: {judge: concise}}``)
through collabrl's shared judge: the description, intent and transcript reach ``$description``,
``$intent`` and ``$transcript`` framed under the call id ``$id``, and only the line
``GRADE $id: <grade>`` is read.
"""

from __future__ import annotations

from importlib.resources import files

from collabrl.metrics.prompt_judge import JudgePrompt

CONCISE = JudgePrompt(
    prompt=files(__package__).joinpath("judge_concise.md").read_text(encoding="utf-8"),
    grades={"3": 1.0, "2": 0.5, "1": 0.0},
)
