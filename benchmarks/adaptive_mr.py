"""Adaptive forward sampling against a fixed S: requests and tokens per DPO pair, pair accuracy.

The environment knows the truth. Every candidate reply carries a hidden quality level q drawn
(seeded by its request) from LEVELS, so a turn's three candidates are sometimes far apart,
sometimes close and sometimes tied. The interactivity judge grades a sampled future 3 / 2 / 1
(reward 1 / 0.5 / 0) with probabilities that depend on q only, drawn from an RNG seeded by the
judged transcript: a future's grade is the same in every run, and a candidate's expected reward
is exactly q. The user simulator, the policy, the future assistant and the judge are scripted
backends; the data engine, the reward and the export are the project's own.

Part 1 (no latency): the same tasks through the engine twice, fixed S = samples_max and
``reward.adaptive=pairs`` with the same samples_max; both export DPO pairs with the same
min_gap. Reported: requests and tokens per exported pair, exported pairs, and pair accuracy
(the chosen reply's true expected reward above the rejected's). Goals: requests_ratio
(adaptive / fixed, per pair) <= 0.6, accuracy_drop (fixed - adaptive) <= 0.01, pairs within 10%.
Part 2: conversations per minute, adaptive vs fixed, every role on a fake OpenAI-compatible
server that sleeps L seconds per request (default 0.2), under the same concurrency cap.
Run: ``python benchmarks/adaptive_mr.py [--conversations N] [--samples-max S]``; the last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collabrl.adaptive import AdaptiveSampling
from collabrl.assembly import build_assistant, build_reward, build_simulator
from collabrl.backends.scripted import ScriptedBackend
from collabrl.backends.stack import Roles
from collabrl.config import ExportConfig, GenerateConfig, load_config
from collabrl.engine import DataEngine
from collabrl.export import export
from collabrl.metrics.framing import find_call_id
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.records import read_jsonl
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.simulator import UserSimulator
from collabrl.testing.fake_openai import FakeOpenAIServer
from collabrl.types import Completion, GenerationParams, Message, Task

LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
QUALITY = re.compile(r"\[q=([0-9.]+)\]")
MIN_GAP = 0.05
ROLES = ("policy", "future", "user", "judge")


def grade_probs(q: float) -> dict[str, float]:
    """P(grade) for a candidate of quality q: mean reward 0.5 * P(2) + P(3) is exactly q."""
    middle = 0.4 * (1 - abs(2 * q - 1)) + 0.1
    top = q - 0.5 * middle
    return {"1": 1 - middle - top, "2": middle, "3": top}


def _rng(*parts: object) -> random.Random:
    return random.Random(hashlib.sha256(repr(parts).encode()).digest())


def env_reply(role: str, messages: Sequence[dict[str, str]], index: int) -> str:
    """The reply of ``role`` to ``messages`` (sample ``index``): the whole environment."""
    text = "\n".join(m["content"] for m in messages)
    if role == "policy":
        return f"Option {index}: [q={_rng(text, index).choice(LEVELS)}] here is my take."
    if role == "future":
        return f"Noted; continuing ({index})."
    if role == "user":
        opening = not any(m["role"] == "assistant" for m in messages)
        topic = " ".join(text.split("<<<REQUEST", 1)[-1].split()[:6])
        message = f"hi, I need help with: {topic}" if opening else f"more detail, take {index}"
        return json.dumps({"thought": "t", "message": message, "terminate": False})
    call = find_call_id(text)
    q = float(QUALITY.findall(text)[-1])
    probs = grade_probs(q)
    grade = _rng(text).choices(list(probs), weights=list(probs.values()))[0]
    return f"Graded.\nGRADE {call}: {grade}"


class Counted:
    """A backend that counts its requests and tokens (prompt + completion)."""

    def __init__(self, role: str) -> None:
        self.backend = ScriptedBackend(reply_fn=self._reply, name=role)
        self.role = role
        self.requests = 0
        self.tokens = 0

    def _reply(self, messages: Sequence[Message], params: GenerationParams, index: int) -> str:
        return env_reply(
            self.role, [{"role": m.role, "content": m.content} for m in messages], index
        )

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        completions = await self.backend.generate(messages, params)
        self.requests += 1
        self.tokens += sum(c.usage.prompt_tokens + c.usage.completion_tokens for c in completions)
        return completions


def tasks(n: int) -> list[Task]:
    return [
        Task(id=f"t{i}", description="a chat", intent=f"Request {i}: plan my week")
        for i in range(n)
    ]


def scripted_engine(
    backends: dict[str, Counted],
    samples_max: int,
    samples_min: int,
    adaptive: bool,
    confidence: float,
) -> DataEngine:
    user = UserSimulator(backends["user"], max_reasks=0)
    policy = Assistant(backends["policy"])
    sampler = ForwardSampler(
        UserSimulator(backends["user"], max_reasks=0),
        Assistant(backends["future"]),
        samples=samples_max,
        window=1,
    )
    rule = AdaptiveSampling(
        mode="pairs",
        samples_min=samples_min,
        samples_max=samples_max,
        confidence=confidence,
        reward_range=(0.0, 1.0),
        min_gap=MIN_GAP,
    )
    reward = MultiturnReward(
        {"interactivity": WeightedMetric(InteractivityJudge(backends["judge"]), 1.0)},
        sampler,
        adaptive=rule if adaptive else None,
    )
    config = GenerateConfig(candidates=3, proactive_share=0, max_turns=1, keep_futures=False)
    return DataEngine(config, user=user, policy=policy, proactive=policy, reward=reward)


def pair_figures(folder: Path) -> dict[str, Any]:
    """Export the run's DPO pairs; count them and score each against the truth."""
    export(
        ExportConfig(
            input_dir=folder,
            output_dir=folder / "export",
            min_gap=MIN_GAP,
            eval_fraction=0,
            save_dataset=False,
        )
    )
    pairs = list(read_jsonl(folder / "export" / "dpo_train.jsonl"))

    def quality(reply: list[dict[str, str]]) -> float:
        return float(QUALITY.findall(reply[0]["content"])[-1])

    right = sum(quality(p["chosen"]) > quality(p["rejected"]) for p in pairs)
    stopped = [
        c.get("stopped") for t in read_jsonl(folder / "turns.jsonl") for c in t["candidates"]
    ]
    return {
        "pairs": len(pairs),
        "accuracy": right / len(pairs) if pairs else None,
        "stopped": {r: stopped.count(r) for r in set(stopped) if r},
    }


async def accuracy_run(
    conversations: int, samples_max: int, samples_min: int, adaptive: bool, confidence: float
) -> dict[str, Any]:
    backends = {role: Counted(role) for role in ROLES}
    engine = scripted_engine(backends, samples_max, samples_min, adaptive, confidence)
    with tempfile.TemporaryDirectory() as folder:
        outcomes = await engine.run(tasks(conversations), Path(folder))
        assert outcomes == {"ok": conversations}, outcomes
        figures = pair_figures(Path(folder))
    requests = sum(b.requests for b in backends.values())
    tokens = sum(b.tokens for b in backends.values())
    pairs = figures["pairs"] or 1
    return {
        **figures,
        "requests": requests,
        "tokens": tokens,
        "requests_per_pair": requests / pairs,
        "tokens_per_pair": tokens / pairs,
    }


def compare(fixed: dict[str, Any], adaptive: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests_ratio": adaptive["requests_per_pair"] / fixed["requests_per_pair"],
        "tokens_ratio": adaptive["tokens_per_pair"] / fixed["tokens_per_pair"],
        "accuracy_drop": fixed["accuracy"] - adaptive["accuracy"],
        "pairs_ratio": adaptive["pairs"] / fixed["pairs"],
    }


def server_reply(request: Any, index: int) -> str:
    return env_reply(
        request.body["model"], request.messages, (request.body.get("seed") or 0) + index
    )


async def conversations_per_minute(
    base_url: str, conversations: int, samples_max: int, samples_min: int, adaptive: bool, cap: int
) -> float:
    overrides = [
        "cache.enabled=false",
        "reward.window=1",
        f"reward.samples={samples_max}",
        "reward.future_assistant_role=future",
        f"export.min_gap={MIN_GAP}",
        "reward.metrics=[{name: interactivity}]",
        "reward.reward_range=[0, 1]",
        f"reward.adaptive={'pairs' if adaptive else 'off'}",
        f"reward.samples_min={samples_min}",
        "generate.candidates=3",
        "generate.proactive_share=0",
        "generate.max_turns=1",
        f"generate.conversations_in_flight={conversations}",
        "user.max_reasks=0",
    ]
    for role in ROLES:
        overrides += [
            f"roles.{role}.kind=openai",
            f"roles.{role}.model={role}",
            f"roles.{role}.base_url={base_url}",
            f"roles.{role}.max_concurrency={cap}",
            f"roles.{role}.generation.seed=0",
        ]
    config = load_config(None, overrides)
    async with Roles(config) as roles:
        policy = build_assistant(config, roles)
        engine = DataEngine(
            config.generate,
            user=build_simulator(config, roles),
            policy=policy,
            proactive=policy,
            reward=build_reward(config, roles),
        )
        with tempfile.TemporaryDirectory() as folder:
            started = time.monotonic()
            outcomes = await engine.run(tasks(conversations), Path(folder))
            wall = time.monotonic() - started
    assert outcomes == {"ok": conversations}, outcomes
    return conversations / wall * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--samples-max", type=int, default=64)
    parser.add_argument("--samples-min", type=int, default=4)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--latency-conversations", type=int, default=24)
    parser.add_argument("--cap", type=int, default=32)
    args = parser.parse_args()
    runs = {}
    for name, adaptive in (("fixed", False), ("adaptive", True)):
        started = time.monotonic()
        runs[name] = asyncio.run(
            accuracy_run(
                args.conversations, args.samples_max, args.samples_min, adaptive, args.confidence
            )
        )
        print(f"{name}: {runs[name]} ({time.monotonic() - started:.0f}s)")
    speed = {}
    with FakeOpenAIServer(reply_fn=server_reply, latency=args.latency) as server:
        for name, adaptive in (("fixed", False), ("adaptive", True)):
            speed[name] = asyncio.run(
                conversations_per_minute(
                    server.base_url,
                    args.latency_conversations,
                    args.samples_max,
                    args.samples_min,
                    adaptive,
                    args.cap,
                )
            )
            print(f"{name}: {speed[name]:.1f} conversations per minute at L={args.latency}s")
    result = {
        "conversations": args.conversations,
        "samples_max": args.samples_max,
        "samples_min": args.samples_min,
        "confidence": args.confidence,
        "min_gap": MIN_GAP,
        **{k: round(v, 4) for k, v in compare(runs["fixed"], runs["adaptive"]).items()},
        "fixed": _rounded(runs["fixed"]),
        "adaptive": _rounded(runs["adaptive"]),
        "latency_s": args.latency,
        "cap": args.cap,
        "conversations_per_minute": {k: round(v, 1) for k, v in speed.items()},
    }
    print(json.dumps(result))


def _rounded(run: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in run.items()}


if __name__ == "__main__":
    main()
