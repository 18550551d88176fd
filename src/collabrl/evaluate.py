"""Evaluation: did training make the model a better collaborator, and by how much?

Each system under test (a trained checkpoint, the base model, the base prompted to be proactive,
any backend) chats with the user simulator on held-out tasks, ``seeds`` conversations per task
(seed s is the sample index of every call, so systems meet the same simulated users). Per
conversation: the task metric on the final artifact (accuracy, pass rate or BLEU: the first
configured one that applies to the task), the assistant's tokens, the interactivity grade
(reported on the paper's ITR scale), turns, and whether the user ended satisfied. Unscored
values are excluded from means and counted. The summary gives every figure with a bootstrap
interval and paired differences against the first system, on the same tasks and seeds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from collabrl.aio import map_bounded
from collabrl.config import EvalConfig, EvalSystem
from collabrl.metrics.base import Metric, applies_to
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.prompts import load_prompt
from collabrl.records import JsonlAppender, read_jsonl, write_atomic
from collabrl.rollout import Policy, run_conversation
from collabrl.simulator import UserSimulator
from collabrl.stats import bootstrap_mean, paired_difference
from collabrl.types import Task

RECORDS_FILE = "conversations.jsonl"


class EvalRecord(BaseModel):
    """One evaluated conversation."""

    model_config = ConfigDict(frozen=True)

    system: str
    task_id: str
    seed: int
    metric: str | None
    score: float | None
    score_reason: str | None = None
    itr_grade: float | None
    itr_reason: str | None = None
    assistant_tokens: int
    turns: int
    satisfied: bool
    ended: str
    error: str | None = None
    messages: list[dict[str, str]]
    flags: list[str] = []

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.system, self.task_id, self.seed)


def system_policy(system: EvalSystem, backend_for: Callable[[str], Any], params_for) -> Policy:
    prompt = load_prompt("proactive") if system.proactive else system.system_prompt
    return Policy(backend_for(system.role), params_for(system.role), system_prompt=prompt)


class Evaluation:
    """Runs (system x task x seed) conversations and scores them."""

    def __init__(self, config: EvalConfig, *, policies: dict[str, Policy], user: UserSimulator,
                 task_metrics: list[Metric], judge: InteractivityJudge) -> None:
        self.config = config
        self.policies = policies
        self.user = user
        self.task_metrics = task_metrics
        self.judge = judge

    async def run(self, tasks: list[Task], on_done: Callable[[EvalRecord], None] | None = None) -> Path:
        """Evaluate what is not in ``output_dir`` yet; returns the records file."""
        out = self.config.output_dir / RECORDS_FILE
        done = {(r["system"], r["task_id"], r["seed"]) for r in read_jsonl(out)} if out.exists() else set()
        todo = ((name, task, seed) for name in self.policies for task in tasks
                for seed in range(self.config.seeds) if (name, task.id, seed) not in done)
        with JsonlAppender(out) as writer:

            async def one(item) -> None:
                record = await self.conversation(*item)
                writer.append(record)
                if on_done is not None:
                    on_done(record)

            await map_bounded(one, todo, self.config.conversations_in_flight)
        return out

    async def conversation(self, system: str, task: Task, seed: int) -> EvalRecord:
        run = await run_conversation(task, self.policies[system], self.user,
                                     self.config.max_turns, sample_index=seed)
        metric = next((m for m in self.task_metrics if applies_to(m, task)), None)
        if run.failed:
            score, itr = None, None
            reasons = (run.error, run.error)
        else:
            task_score = await metric(run.conversation, task) if metric else None
            grade = await self.judge(run.conversation, task)
            score = task_score.value if task_score else None
            itr = float(grade.detail["grade"]) if grade.scored else None
            reasons = (task_score.reason if task_score else "no_task_metric", grade.reason)
        return EvalRecord(
            system=system, task_id=task.id, seed=seed, metric=metric.name if metric else None,
            score=score, score_reason=reasons[0], itr_grade=itr, itr_reason=reasons[1],
            assistant_tokens=run.policy_usage.completion_tokens,
            turns=len(run.conversation.turns("assistant")), satisfied=run.ended == "user_terminated",
            ended=run.ended, error=run.error, messages=run.conversation.to_openai(),
            flags=list(run.flags),
        )


FIGURES: dict[str, Callable[[dict], float | None]] = {
    "score": lambda r: None if r["score"] is None else 100 * r["score"],
    "tokens_k": lambda r: r["assistant_tokens"] / 1000,
    "itr": lambda r: None if r["itr_grade"] is None else 100 * 2 * (r["itr_grade"] - 2.5),
    "turns": lambda r: float(r["turns"]),
    "satisfied": lambda r: 100.0 * r["satisfied"],
}


def summarise(records: list[dict], systems: list[str], resamples: int = 2000) -> dict[str, Any]:
    """Per (metric group, system): every figure with a bootstrap interval, unscored counts, and
    paired differences against the first system."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["metric"] or "none"].append(r)
    summary: dict[str, Any] = {}
    for group, rows in sorted(groups.items()):
        per_system = {s: [r for r in rows if r["system"] == s] for s in systems}
        summary[group] = {
            "systems": {s: _figures(rs, resamples) for s, rs in per_system.items() if rs},
            "paired": _paired(per_system, systems, resamples),
        }
    return summary


def _figures(rows: list[dict], resamples: int) -> dict[str, Any]:
    out: dict[str, Any] = {"conversations": len(rows)}
    for name, get in FIGURES.items():
        values = [v for v in map(get, rows) if v is not None]
        out[name] = bootstrap_mean(values, resamples=resamples).to_dict() if values else None
        out[f"{name}_unscored"] = len(rows) - len(values)
    return out


def _paired(per_system: dict[str, list[dict]], systems: list[str], resamples: int) -> list[dict]:
    base = systems[0]
    diffs = []
    for other in systems[1:]:
        for name, get in FIGURES.items():
            a = {(r["task_id"], r["seed"]): get(r) for r in per_system[other]}
            b = {(r["task_id"], r["seed"]): get(r) for r in per_system[base]}
            a = {k: v for k, v in a.items() if v is not None}
            b = {k: v for k, v in b.items() if v is not None}
            diff = paired_difference(other, a, base, b, resamples=resamples)
            if diff is not None:
                diffs.append({"figure": name, **diff.to_dict()})
    return diffs


METRIC_LABELS = {"accuracy": "Accuracy", "pass_rate": "Pass rate", "bleu": "BLEU", "bleu_char": "BLEU (char)"}


def _interval(est: dict | None, digits: int) -> str:
    if not est:
        return "-"
    return f"{est['mean']:.{digits}f} [{est['low']:.{digits}f}, {est['high']:.{digits}f}]"


def table_markdown(summary: dict[str, Any], systems: list[str]) -> str:
    """The paper's Table 1 shape: per task metric, its value / tokens (k) / ITR per system."""
    groups = list(summary)
    header = ["System"] + [f"{METRIC_LABELS.get(g, g)} {col}" for g in groups
                           for col in ("(%)", "tok (k)", "ITR")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in systems:
        cells = [system]
        for group in groups:
            figures = summary[group]["systems"].get(system, {})
            for name, digits in (("score", 1), ("tokens_k", 2), ("itr", 1)):
                est = figures.get(name)
                cells.append(_interval(est, digits))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {d['a']} vs {d['b']}, {METRIC_LABELS.get(g, g)} {d['figure']}: {d['mean']:+.2f} "
        f"[{d['low']:+.2f}, {d['high']:+.2f}]" + (" (within noise)" if d["within_noise"] else "")
        for g in groups for d in summary[g]["paired"] if d["figure"] in ("score", "itr", "tokens_k")
    ]
    intervals = ("Values are means with 95% bootstrap intervals; paired differences on the same "
                 "tasks and seeds:")
    return "\n".join(lines + ["", intervals, *notes]) + "\n"


def write_summary(config: EvalConfig, systems: list[str]) -> dict[str, Any]:
    records = list(read_jsonl(config.output_dir / RECORDS_FILE))
    summary = summarise(records, systems, config.bootstrap_resamples)
    write_atomic(config.output_dir / "summary.json", [json.dumps(summary, indent=2, allow_nan=False)])
    write_atomic(config.output_dir / "table.md", [table_markdown(summary, systems)])
    return summary
