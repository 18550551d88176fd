"""Evaluation: did training make the model a better collaborator, and by how much?

Each system under test (a trained checkpoint, the base model, the base prompted to be proactive,
any backend) chats with the user simulator on held-out tasks, ``seeds`` conversations per task
(seed s is the sample index of every call, so systems meet the same simulated users). Per
conversation: the task metric on the final artifact (accuracy, pass rate or BLEU: the first
configured one that applies to the task), the assistant's tokens, the interactivity grade
(reported on the paper's ITR scale), turns, and whether the user ended satisfied. Unscored
values are excluded from means and counted. The summary gives every figure with a bootstrap
interval and paired differences against the first system, on the same tasks and seeds.

A conversation that failed (the simulator or a backend gave up) is recorded with its reason and
the error's message, left out of every figure and counted per system; a rerun retries it and the
summary reads the latest record of each item. A conversation cut off by the budget
(``collabrl.budget``) writes no record. An assistant reply cut by the length limit is the
system's own behaviour: the conversation is scored as it went, and the cut is counted.

With ``user.personas`` set, conversation (task, seed) meets the persona of (task id, seed) for
every system; each record names it, and the summary breaks every figure down per persona.
Reliability: pass^k per system (``pass_hat_k``), the share of tasks whose k seeds all succeed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from collabrl.breakdowns import (
    persona_breakdown,
    persona_markdown,
    reliability,
    reliability_markdown,
)
from collabrl.budget import Budget
from collabrl.config import EvalConfig, EvalSystem
from collabrl.failures import FailureTally
from collabrl.metrics.base import Metric, applies_to
from collabrl.metrics.clarification import asks_question
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.personas import PersonaSet, cast, persona_of
from collabrl.prompts import load_prompt
from collabrl.records import (
    JsonlAppender,
    file_manifest,
    latest_by,
    read_jsonl,
    write_atomic,
    write_manifest,
)
from collabrl.rollout import Assistant, run_conversation
from collabrl.simulator import UserSimulator
from collabrl.stats import bootstrap_mean, paired_difference
from collabrl.types import Task

RECORDS_FILE = "conversations.jsonl"
GROUP_FIELD = "eval_group"  # task metadata that reports a task apart (e.g. "complete requests")
KEY = ("system", "task_id", "seed")


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
    error_detail: str | None = None
    cut_replies: int = 0
    group: str | None = None
    messages: list[dict[str, str]]
    flags: list[str] = []
    persona: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.system, self.task_id, self.seed)


def system_assistant(
    system: EvalSystem, backend_for: Callable[[str], Any], params_for
) -> Assistant:
    prompt = load_prompt("proactive") if system.proactive else system.system_prompt
    return Assistant(backend_for(system.role), params_for(system.role), system_prompt=prompt)


class Evaluation:
    """Runs (system x task x seed) conversations and scores them."""

    def __init__(
        self,
        config: EvalConfig,
        *,
        assistants: dict[str, Assistant],
        user: UserSimulator,
        task_metrics: list[Metric],
        judge: InteractivityJudge | None,
        budget: Budget | None = None,
        personas: PersonaSet | None = None,
    ) -> None:
        self.config = config
        self.personas = personas
        self.budget = budget or Budget()
        self.assistants = assistants
        self.user = user
        self.task_metrics = task_metrics
        self.judge = judge
        self.failures = FailureTally()
        self.evaluated = 0

    async def run(
        self,
        tasks: list[Task],
        on_done: Callable[[EvalRecord], None] | None = None,
        *,
        retry_failed: bool = True,
    ) -> Path:
        """Evaluate what ``output_dir`` has no result for yet (``pending``); returns the records
        file."""
        out = self.config.output_dir / RECORDS_FILE
        todo = self.pending(tasks, retry_failed=retry_failed)
        with JsonlAppender(out) as writer:

            async def one(item) -> None:
                record = await self.conversation(*item)
                writer.append(record)
                self.evaluated += 1
                if record.error:
                    self.failures.add(record.error, record.error_detail)
                if on_done is not None:
                    on_done(record)

            await self.budget.map_bounded(one, todo, self.config.conversations_in_flight)
        return out

    def pending(
        self, tasks: list[Task], *, retry_failed: bool = True
    ) -> list[tuple[str, Task, int]]:
        """The (system, task, seed) items ``output_dir`` has no result for: never run, or whose
        latest record failed (unless ``retry_failed`` is False)."""
        out = self.config.output_dir / RECORDS_FILE
        latest = latest_by(read_jsonl(out), *KEY) if out.exists() else {}
        done = {key for key, r in latest.items() if not r["error"] or not retry_failed}
        return [
            (name, task, seed)
            for name in self.assistants
            for task in tasks
            for seed in range(self.config.seeds)
            if (name, task.id, seed) not in done
        ]

    async def conversation(self, system: str, task: Task, seed: int) -> EvalRecord:
        task = cast(task, self.personas, seed)
        run = await run_conversation(
            task, self.assistants[system], self.user, self.config.max_turns, sample_index=seed
        )
        metric = next((m for m in self.task_metrics if applies_to(m, task)), None)
        if run.failed:
            score, itr = None, None
            reasons = (run.error, run.error)
        else:
            task_score = await metric(run.conversation, task) if metric else None
            grade = await self.judge(run.conversation, task) if self.judge else None
            score = task_score.value if task_score else None
            itr = float(grade.detail["grade"]) if grade and grade.scored else None
            reasons = (
                task_score.reason if task_score else "no_task_metric",
                grade.reason if grade else "no_judge",
            )
        return EvalRecord(
            system=system,
            task_id=task.id,
            seed=seed,
            metric=metric.name if metric else None,
            score=score,
            score_reason=reasons[0],
            itr_grade=itr,
            itr_reason=reasons[1],
            assistant_tokens=run.policy_usage.completion_tokens,
            turns=len(run.conversation.turns("assistant")),
            satisfied=run.ended == "user_terminated",
            ended=run.ended,
            error=run.error,
            error_detail=run.error_detail,
            cut_replies=run.cut_replies,
            group=task.metadata.get(GROUP_FIELD),
            messages=run.conversation.to_openai(),
            flags=list(run.flags),
            persona=persona_of(task),
        )


FIGURES: dict[str, Callable[[dict], float | None]] = {
    "score": lambda r: None if r["score"] is None else 100 * r["score"],
    "tokens_k": lambda r: r["assistant_tokens"] / 1000,
    "itr": lambda r: None if r["itr_grade"] is None else 100 * 2 * (r["itr_grade"] - 2.5),
    "turns": lambda r: float(r["turns"]),
    "satisfied": lambda r: 100.0 * r["satisfied"],
    "asks_first": lambda r: _asks_first(r.get("messages", [])),
}


def _asks_first(messages: list[dict[str, str]]) -> float | None:
    """100 if the first assistant reply asks a question (contains '?'), 0 if not, None if none."""
    first = next((m["content"] for m in messages if m["role"] == "assistant"), None)
    return None if first is None else 100.0 * asks_question(first)


def summarise(
    records: list[dict],
    systems: list[str],
    resamples: int = 2000,
    *,
    seeds: int | None = None,
    success_threshold: float = 1.0,
) -> dict[str, Any]:
    """Per (metric group, system): every figure with a bootstrap interval, unscored counts, the
    failed conversations with their reasons, and paired differences against the first system;
    per group also the figures per persona and pass^1..pass^seeds (``collabrl.breakdowns``;
    ``seeds`` defaults to the highest seed recorded + 1).

    Only the latest record of each (system, task, seed) counts, and a failed conversation (the
    simulator or the system's backend failed) is left out of every figure: it says nothing about
    the system, so it is counted, never scored as 0 tokens, 0 turns and unsatisfied."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in latest_by(records, *KEY).values():
        groups[group_name(r)].append(r)
    summary: dict[str, Any] = {}
    for group, rows in sorted(groups.items()):
        per_system = {s: [r for r in rows if r["system"] == s] for s in systems}
        ok = {s: [r for r in rs if not r["error"]] for s, rs in per_system.items()}
        summary[group] = {
            "systems": {s: _figures(rs, resamples) for s, rs in per_system.items() if rs},
            "paired": _paired(ok, systems, resamples),
            "personas": persona_breakdown(rows, systems, lambda rs: _figures(rs, resamples)),
            "reliability": reliability(
                rows, systems, seeds or _seeds_seen(rows), success_threshold
            ),
        }
    return summary


def _seeds_seen(rows: list[dict]) -> int:
    return max(r["seed"] for r in rows) + 1


def group_name(record: dict) -> str:
    """A record's summary group: its task metric, then its task's ``eval_group`` if any."""
    metric = record["metric"] or "none"
    return f"{metric} / {record['group']}" if record.get("group") else metric


def _figures(rows: list[dict], resamples: int) -> dict[str, Any]:
    ok = [r for r in rows if not r["error"]]
    failed = Counter(r["error"] for r in rows if r["error"])
    out: dict[str, Any] = {
        "conversations": len(ok),
        "failed": sum(failed.values()),
        "failure_reasons": dict(failed),
        "cut_replies": sum(r.get("cut_replies", 0) for r in ok),
    }
    for name, get in FIGURES.items():
        values = [v for v in map(get, ok) if v is not None]
        out[name] = bootstrap_mean(values, resamples=resamples).to_dict() if values else None
        out[f"{name}_unscored"] = len(ok) - len(values)
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


METRIC_LABELS = {
    "accuracy": "Accuracy",
    "pass_rate": "Pass rate",
    "bleu": "BLEU",
    "bleu_char": "BLEU (char)",
    "detail_success": "Task success",
}
# table columns: (figure, header, digits); a column no system has a value for is left out
COLUMNS = (
    ("score", "(%)", 1),
    ("asks_first", "asks first (%)", 1),
    ("turns", "turns", 2),
    ("tokens_k", "tok (k)", 2),
    ("itr", "ITR", 1),
)
NOTED = ("score", "asks_first", "turns", "tokens_k", "itr")


def group_label(group: str) -> str:
    """A summary group's name for tables: "Task success (complete requests)"."""
    metric, _, subgroup = group.partition(" / ")
    label = METRIC_LABELS.get(metric, metric)
    return f"{label} ({subgroup})" if subgroup else label


def _interval(est: dict | None, digits: int) -> str:
    if not est:
        return "-"
    return f"{est['mean']:.{digits}f} [{est['low']:.{digits}f}, {est['high']:.{digits}f}]"


def table_markdown(summary: dict[str, Any], systems: list[str]) -> str:
    """The paper's Table 1 shape: per task metric (and eval group), its value / share of first
    replies that ask / turns / tokens (k) / ITR per system; columns without values are left out."""
    groups = list(summary)
    columns = {
        g: [c for c in COLUMNS if any(f.get(c[0]) for f in summary[g]["systems"].values())]
        for g in groups
    }
    header = ["System"] + [
        f"{group_label(g)} {col}" if name == "score" else f"{group_label(g)}: {col}"
        for g in groups
        for name, col, _ in columns[g]
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in systems:
        cells = [system]
        for group in groups:
            figures = summary[group]["systems"].get(system, {})
            cells.extend(_interval(figures.get(name), digits) for name, _, digits in columns[group])
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {d['a']} vs {d['b']}, {group_label(g)} {d['figure']}: {d['mean']:+.2f} "
        f"[{d['low']:+.2f}, {d['high']:+.2f}]" + (" (within noise)" if d["within_noise"] else "")
        for g in groups
        for d in summary[g]["paired"]
        if d["figure"] in NOTED
    ]
    intervals = (
        "Values are means with 95% bootstrap intervals; paired differences on the same "
        "tasks and seeds:"
    )
    breakdowns = [
        line
        for g in groups
        for line in (
            *reliability_markdown(group_label(g), summary[g], systems),
            *persona_markdown(group_label(g), summary[g], systems, _interval),
        )
    ]
    return (
        "\n".join(lines + ["", intervals, *notes, *_left_out(summary, systems), *breakdowns]) + "\n"
    )


def _left_out(summary: dict[str, Any], systems: list[str]) -> list[str]:
    """Lines naming, per system, the failed conversations left out and the cut replies."""
    lines = []
    for system in systems:
        figures = [g["systems"][system] for g in summary.values() if system in g["systems"]]
        failed: Counter[str] = Counter()
        for f in figures:
            failed.update(f["failure_reasons"])
        cut = sum(f["cut_replies"] for f in figures)
        if failed:
            reasons = ", ".join(f"{k} x{v}" for k, v in failed.most_common())
            n = sum(failed.values())
            lines.append(
                f"- {system}: {n} failed conversation{'s' * (n != 1)} left out ({reasons})"
            )
        if cut:
            lines.append(
                f"- {system}: {cut} repl{'ies' if cut != 1 else 'y'} cut by the length "
                "limit (scored as they were)"
            )
    return ["", *lines] if lines else []


def write_summary(config: EvalConfig, systems: list[str], **run_info: Any) -> dict[str, Any]:
    """``summary.json``, ``table.md`` and a manifest (files, failures, ``run_info``)."""
    records_path = config.output_dir / RECORDS_FILE
    summary = summarise(
        list(read_jsonl(records_path)),
        systems,
        config.bootstrap_resamples,
        seeds=config.seeds,
        success_threshold=config.success_threshold,
    )
    entries = [
        file_manifest(records_path),
        write_atomic(
            config.output_dir / "summary.json", [json.dumps(summary, indent=2, allow_nan=False)]
        ),
        write_atomic(config.output_dir / "table.md", [table_markdown(summary, systems)]),
    ]
    failed: Counter[str] = Counter()
    for group in summary.values():
        failed.update({s: figures["failed"] for s, figures in group["systems"].items()})
    write_manifest(config.output_dir, entries, command="eval", failed=dict(+failed), **run_info)
    return summary
