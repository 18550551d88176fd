"""What each stage sends to the tracker (``collabrl.tracking``), as tag -> value dicts.

``generate`` logs running figures over everything it built so far, at step = conversations done:
MR mean and spread (standard deviation over scored candidates), the same per reward metric, the
chosen-vs-rejected gap (best minus worst candidate MR of each turn with two or more scored
candidates), the failure rate, the shares of candidates and futures cut by the length limit, and
tokens and cost per role. ``eval`` logs, per system, running means of the summary's figures over
the conversations finished so far, then the summary's means and paired differences once. Online
DPO logs per round, PPO per update. Unscored values never count as 0: a figure with nothing
scored yet is None, which the tracker leaves out. Tag names: README, "Tracking".

A rerun that resumes ``generate`` or ``eval`` continues the step where the earlier runs stopped:
the step counts the conversation records in the output folder (``earlier``: those already there,
a retried failure's old record included), so its points follow the earlier run's instead of
overlapping them. Its running figures are over the conversations this run finished.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from collabrl.backends.accounting import UsageMeter
from collabrl.engine import ConversationRecord, TurnRecord
from collabrl.evaluate import FIGURES, EvalRecord
from collabrl.records import read_jsonl

Figures = dict[str, float | int | None]


class Running:
    """Mean and population standard deviation of a growing series, in constant memory and time
    per value (Welford's update), so figures logged after every conversation stay cheap."""

    def __init__(self) -> None:
        self.count, self._mean, self._squares = 0, 0.0, 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self._mean
        self._mean += delta / self.count
        self._squares += delta * (value - self._mean)

    @property
    def mean(self) -> float | None:
        return self._mean if self.count else None

    @property
    def std(self) -> float | None:
        return (self._squares / self.count) ** 0.5 if self.count else None


def records_in(path: Path) -> int:
    """How many records a JSONL output file holds (0 when there is none yet): where a resumed
    run's step starts."""
    return sum(1 for _ in read_jsonl(path)) if path.exists() else 0


def usage_figures(stage: str, meter: UsageMeter) -> Figures:
    """Tokens (prompt + completion) and cost so far, per role and in all; cost needs prices."""
    out: Figures = {}
    for role, usage in meter.roles.items():
        out[f"{stage}/usage/{role}/tokens"] = usage.prompt_tokens + usage.completion_tokens
        out[f"{stage}/usage/{role}/cost"] = usage.cost
    out[f"{stage}/usage/tokens"] = sum(
        u.prompt_tokens + u.completion_tokens for u in meter.roles.values()
    )
    out[f"{stage}/usage/cost"] = meter.total_cost
    return out


class GenerateFigures:
    """Running figures of the data engine, fed turn by turn and conversation by conversation;
    ``earlier``: conversation records already in the output folder (a resumed run)."""

    def __init__(self, earlier: int = 0) -> None:
        self.mr, self.gaps = Running(), Running()
        self.metrics: dict[str, Running] = defaultdict(Running)
        self.candidates = self.cut_candidates = self.futures = 0
        self.ok = self.failed = 0
        self.earlier = earlier

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def step(self) -> int:
        """The tracking step: conversations finished by earlier runs and this one."""
        return self.earlier + self.done

    def add_turn(self, record: TurnRecord) -> None:
        scored = [c.mr for c in record.candidates if c.mr is not None]
        for value in scored:
            self.mr.add(value)
        if len(scored) >= 2:
            self.gaps.add(max(scored) - min(scored))
        for candidate in record.candidates:
            self.futures += len(candidate.sample_rewards)
            for name, value in candidate.metric_means.items():
                if value is not None:
                    self.metrics[name].add(value)
        self.candidates += len(record.candidates)
        self.cut_candidates += sum(c.cut for c in record.candidates)

    def add_conversation(self, record: ConversationRecord) -> None:
        if record.status == "ok":
            self.ok += 1
        else:
            self.failed += 1

    def figures(self, cut_futures: int, meter: UsageMeter) -> Figures:
        """The figures so far; ``cut_futures``: futures with a reply cut (the engine's count)."""
        out: Figures = {
            "generate/mr/mean": self.mr.mean,
            "generate/mr/std": self.mr.std,
            "generate/gap/mean": self.gaps.mean,
            "generate/gap/std": self.gaps.std,
        }
        for name, series in sorted(self.metrics.items()):
            out[f"generate/metric/{name}/mean"] = series.mean
            out[f"generate/metric/{name}/std"] = series.std
        out["generate/failure_rate"] = self.failed / self.done if self.done else None
        out["generate/cut/candidate_rate"] = (
            self.cut_candidates / self.candidates if self.candidates else None
        )
        out["generate/cut/future_rate"] = cut_futures / self.futures if self.futures else None
        return out | usage_figures("generate", meter)


class EvalFigures:
    """Running per-system figures of an evaluation, fed record by record; ``earlier``: records
    already in the output folder (a resumed run)."""

    def __init__(self, earlier: int = 0) -> None:
        self.series: dict[tuple[str, str], Running] = defaultdict(Running)
        self.conversations: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.earlier = earlier

    @property
    def done(self) -> int:
        return self.conversations.total()

    @property
    def step(self) -> int:
        """The tracking step: conversations finished by earlier runs and this one."""
        return self.earlier + self.done

    def add(self, record: EvalRecord) -> Figures:
        """The figures of ``record``'s system after adding it; a failed conversation counts
        only in the failure rate."""
        system = record.system
        self.conversations[system] += 1
        if record.error:
            self.failed[system] += 1
        else:
            row = record.model_dump()
            for name, get in [*FIGURES.items(), ("cut_replies", lambda r: r["cut_replies"])]:
                if (value := get(row)) is not None:
                    self.series[system, name].add(value)
        out: Figures = {
            f"eval/{system}/{name}": self.series[system, name].mean
            for name in [*FIGURES, "cut_replies"]
        }
        out[f"eval/{system}/failure_rate"] = self.failed[system] / self.conversations[system]
        return out


def summary_figures(summary: dict[str, Any]) -> Figures:
    """``eval``'s summary: each figure's mean per (task metric, system), and each paired
    difference against the first system."""
    out: Figures = {}
    for group, block in summary.items():
        for system, figures in block["systems"].items():
            for name in FIGURES:
                estimate = figures.get(name)
                out[f"eval/summary/{group}/{system}/{name}"] = estimate and estimate["mean"]
            out[f"eval/summary/{group}/{system}/failed"] = figures["failed"]
        for diff in block["paired"]:
            out[f"eval/summary/{group}/paired/{diff['a']}-{diff['b']}/{diff['figure']}"] = diff[
                "mean"
            ]
    return out


def online_dpo_figures(stats: dict[str, Any], meter: UsageMeter) -> Figures:
    """One round of online DPO (``_round_stats``), with the run's usage so far."""
    chosen, rejected = stats["mean_mr_chosen"], stats["mean_mr_rejected"]
    replies = stats["replies"]
    rated = replies - stats.get("replies_skipped", 0)  # the replies MR was asked for
    out: Figures = {
        "online_dpo/mr/mean": stats["mean_mr"],
        "online_dpo/mr/std": stats["std_mr"],
        "online_dpo/gap/mean": None if chosen is None else chosen - rejected,
        "online_dpo/pairs": stats["pairs"],
        "online_dpo/loss": stats["mean_loss"],
        "online_dpo/unscored_rate": stats["unscored_replies"] / rated if rated else None,
        "online_dpo/unscored_futures": stats["unscored_futures"],
        "online_dpo/prompts_too_long": stats["prompts_too_long"],
        "online_dpo/cut_rate": stats["cut_replies"] / replies if replies else None,
    }
    for name, value in stats["metric_means"].items():
        out[f"online_dpo/metric/{name}/mean"] = value
    return out | usage_figures("online_dpo", meter)


def ppo_figures(metrics: dict[str, Any]) -> Figures:
    """One PPO update: every number it measured (reward, losses, KL, ...) and the unscored rate."""
    out: Figures = {
        f"ppo/{name}": value for name, value in metrics.items() if isinstance(value, int | float)
    }
    replies = metrics["scored"] + metrics["unscored"]
    out["ppo/unscored_rate"] = metrics["unscored"] / replies if replies else None
    return out
