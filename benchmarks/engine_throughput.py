"""Does the data engine keep the allowed concurrency busy, with memory flat in the workload?

Setup: a fake OpenAI-compatible server in its own process that sleeps L seconds per request
(default 0.2) plays every role. The engine builds 20 conversations with k=3 candidates per turn,
S=3 futures of w=2 turn pairs, up to 4 assistant turns, metrics interactivity + accuracy +
token_efficiency, all roles on that server under one concurrency cap C = 64.

utilisation = requests_per_s * L / C: the share of the allowed concurrency that was busy
(goal >= 0.7). Memory: the peak of Python allocations (tracemalloc, in separate shorter runs of
2 turns, since tracing slows Python down) for 8 and for 32 conversations with 8 in flight; "flat"
means the second is not about four times the first (records stream to disk; nothing grows with
the number of conversations done).
Run: ``python benchmarks/engine_throughput.py [--latency L]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from collabrl.assembly import build_assistant, build_reward, build_simulator
from collabrl.backends.stack import Roles
from collabrl.config import load_config
from collabrl.engine import DataEngine
from collabrl.prompts import load_prompt
from collabrl.rollout import Assistant
from collabrl.testing.fake_server_process import FakeServerProcess
from collabrl.types import Task

CAP = 64


def config(base_url: str, in_flight: int, turns: int):
    overrides = [
        "cache.enabled=false",
        "reward.samples=3",
        "reward.window=2",
        "reward.metrics=[{name: interactivity}, {name: accuracy}, {name: token_efficiency}]",
        "generate.candidates=3",
        f"generate.max_turns={turns}",
        f"generate.conversations_in_flight={in_flight}",
    ]
    for role in ("policy", "user", "judge"):
        overrides += [
            f"roles.{role}.kind=openai",
            f"roles.{role}.model=fake",
            f"roles.{role}.base_url={base_url}",
            f"roles.{role}.max_concurrency={CAP}",
        ]
    return load_config(None, overrides)


def tasks(n: int) -> list[Task]:
    return [
        Task(
            id=f"t{i}",
            description="solve a math problem",
            intent=f"Problem {i}: 40 + 2?",
            reference="42",
            artifact="answer",
        )
        for i in range(n)
    ]


async def run_engine(
    base_url: str, conversations: int, in_flight: int, turns: int, out: Path
) -> float:
    cfg = config(base_url, in_flight, turns)
    async with Roles(cfg) as roles:
        policy = build_assistant(cfg, roles)
        engine = DataEngine(
            cfg.generate,
            user=build_simulator(cfg, roles),
            policy=policy,
            proactive=Assistant(policy.backend, policy.params, load_prompt("proactive")),
            reward=build_reward(cfg, roles),
        )
        started = time.monotonic()
        outcomes = await engine.run(tasks(conversations), out)
        assert outcomes == {"ok": conversations}, outcomes
        return time.monotonic() - started


def measure(
    server: FakeServerProcess,
    conversations: int,
    in_flight: int,
    turns: int = 4,
    trace: bool = False,
) -> dict:
    before = server.request_count
    with tempfile.TemporaryDirectory() as folder:
        if trace:
            tracemalloc.start()
        wall = asyncio.run(
            run_engine(server.base_url, conversations, in_flight, turns, Path(folder))
        )
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
    return {"wall_s": wall, "requests": server.request_count - before, "peak_mb": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    latency = parser.parse_args().latency
    with FakeServerProcess(latency=latency, roleplay=True) as server:
        main_run = measure(server, 20, in_flight=64)
        rate = main_run["requests"] / main_run["wall_s"]
        print(
            f"20 conversations: {main_run['requests']} requests in {main_run['wall_s']:.1f}s "
            f"({rate:.0f}/s), utilisation {rate * latency / CAP:.2f}"
        )
        small = measure(server, 8, in_flight=8, turns=2, trace=True)
        large = measure(server, 32, in_flight=8, turns=2, trace=True)
        print(
            f"peak Python memory, 8 in flight: {small['peak_mb']:.1f} MB for 8 conversations, "
            f"{large['peak_mb']:.1f} MB for 32"
        )
    print(
        json.dumps(
            {
                "conversations": 20,
                "wall_s": round(main_run["wall_s"], 2),
                "requests": main_run["requests"],
                "requests_per_s": round(rate, 1),
                "utilisation": round(rate * latency / CAP, 3),
                "peak_mb_8_conversations": round(small["peak_mb"], 1),
                "peak_mb_32_conversations": round(large["peak_mb"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
