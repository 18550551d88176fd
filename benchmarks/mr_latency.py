"""How close scoring candidates with the multiturn-aware reward gets to its critical path.

Setup: a fake OpenAI-compatible server on loopback, in its own process, that sleeps L seconds
per request (default 0.2) plays every role (user simulator, policy, judge, extractor). We score K=3 candidate replies
for one conversation prefix with S=3 futures of w=2 turn pairs and the metrics interactivity +
accuracy + token_efficiency.

Requests the method needs, counted by hand:
  per future: w=2 turn pairs = 2 user-simulator calls + 2 assistant calls = 4
              + 1 interactivity judge call + 1 artifact extraction (accuracy; the extracted
                answer matches the reference deterministically, so no answer-match judge)
              + 0 for token_efficiency (computed locally)            = 6
  per candidate: S=3 futures x 6 = 18;  K=3 candidates: 54 requests.
Critical path: the 4 rollout calls of a future are sequential, then its judge and its extraction
run side by side: 5 x L = 1.0 s at L = 0.2. ratio = wall / critical path (goal <= 1.3).

Second part: 32 prefixes at once with a concurrency cap of 64 on the shared server; the bound
is max(critical path, requests x L / 64). Run: ``python benchmarks/mr_latency.py [--latency L]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from collabrl.assembly import build_reward
from collabrl.backends.stack import Roles
from collabrl.config import load_config
from collabrl.testing.fake_server_process import FakeServerProcess
from collabrl.types import Conversation, Task

K, S, W = 3, 3, 2
CALLS_PER_FUTURE = 2 * W + 2
CRITICAL_CALLS = 2 * W + 1


def config(base_url: str, cap: int):
    overrides = [
        "cache.enabled=false",
        f"reward.samples={S}",
        f"reward.window={W}",
        "reward.metrics=[{name: interactivity}, {name: accuracy}, {name: token_efficiency}]",
    ]
    for role in ("policy", "user", "judge"):
        overrides += [
            f"roles.{role}.kind=openai",
            f"roles.{role}.model=fake",
            f"roles.{role}.base_url={base_url}",
            f"roles.{role}.max_concurrency={cap}",
        ]
    return load_config(None, overrides)


def task(i: int) -> Task:
    return Task(
        id=f"t{i}",
        description="solve a math problem",
        intent=f"What is 40 + 2? ({i})",
        reference="42",
        artifact="answer",
    )


async def score_prefixes(server: FakeServerProcess, prefixes: int, cap: int) -> tuple[float, int]:
    before = server.request_count
    async with Roles(config(server.base_url, cap)) as roles:
        reward = build_reward(roles.config, roles)
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                reward.score(
                    task(i),
                    Conversation.of(("user", f"help with problem {i}")),
                    [f"candidate {c} for {i}" for c in range(K)],
                )
                for i in range(prefixes)
            )
        )
        wall = time.monotonic() - started
    assert all(r.scored and r.unscored == 0 for rs in results for r in rs), (
        "a candidate was unscored"
    )
    return wall, server.request_count - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    latency = args.latency
    with FakeServerProcess(latency=latency, roleplay=True) as server:
        wall, requests = asyncio.run(score_prefixes(server, 1, cap=64))
        critical = CRITICAL_CALLS * latency
        print(
            f"1 prefix: {requests} requests (method needs {K * S * CALLS_PER_FUTURE}), "
            f"wall {wall:.2f}s, critical path {critical:.2f}s"
        )
        wall32, requests32 = asyncio.run(score_prefixes(server, 32, cap=64))
        bound32 = max(critical, requests32 * latency / 64)
        print(
            f"32 prefixes, cap 64: {requests32} requests, wall {wall32:.2f}s, "
            f"bound {bound32:.2f}s, ratio {wall32 / bound32:.2f}"
        )
    print(
        json.dumps(
            {
                "latency_s": latency,
                "wall_s": round(wall, 3),
                "critical_path_s": round(critical, 3),
                "ratio": round(wall / critical, 3),
                "requests": requests,
                "requests_needed": K * S * CALLS_PER_FUTURE,
                "prefixes_32": {
                    "wall_s": round(wall32, 3),
                    "requests": requests32,
                    "bound_s": round(bound32, 3),
                    "ratio": round(wall32 / bound32, 3),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
