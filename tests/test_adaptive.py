"""Adaptive forward sampling: the racing rule, its wiring into the reward and the engine, the
per-task candidate offset, and the benchmark's environment at a tiny size."""

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from collabrl.adaptive import AdaptiveSampling, t_quantile
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import GenerateConfig, RewardConfig, load_config
from collabrl.engine import DataEngine, candidate_offset
from collabrl.records import read_jsonl
from collabrl.report.data import load_run
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, Score, Task

ROOT = Path(__file__).resolve().parents[1]
TASK = Task(id="t", description="chat", intent="anything")
PREFIX = Conversation.of(("user", "help me"))


def rule(mode="pairs", samples_min=2, samples_max=16, **kw):
    return AdaptiveSampling(
        mode=mode,
        samples_min=samples_min,
        samples_max=samples_max,
        confidence=0.95,
        reward_range=(0.0, 1.0),
        min_gap=0.05,
        **kw,
    )


class TableMetric:
    """Future j of candidate "c<k>" scores VALUES[k][j % len]: a known reward per sample."""

    name = "table"

    def __init__(self, values):
        self.values = values
        self.calls = 0

    async def __call__(self, conversation, task):
        self.calls += 1
        candidate = int(conversation.messages[1].content[1:])
        index = int(conversation.last.content.rsplit("s", 1)[1])
        row = self.values[candidate]
        return Score(value=row[index % len(row)])


def reward_with(values, adaptive, samples=16):
    user = UserSimulator(
        ScriptedBackend(reply_fn=lambda m, p, i: json.dumps({"message": f"u s{i}"}))
    )
    policy = Assistant(ScriptedBackend(reply_fn=lambda m, p, i: f"a s{i}"))
    metric = TableMetric(values)
    sampler = ForwardSampler(user, policy, samples=samples, window=1)
    return MultiturnReward(
        {"table": WeightedMetric(metric, 1.0)}, sampler, adaptive=adaptive
    ), metric


def test_t_quantile_matches_tables():
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.995, 3) == pytest.approx(5.841, abs=1e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.042, abs=1e-3)


async def test_clear_gap_settles_early_and_close_ones_sample_to_max():
    values = [[0.9, 1.0], [0.0, 0.1], [0.5, 0.45]]
    mr, _ = reward_with(values, rule())
    results = await mr.score(TASK, PREFIX, ["c0", "c1", "c2"])
    assert all(r.stopped == "settled" for r in results)
    assert all(len(r.samples) < 16 for r in results)
    close, _ = reward_with([[0.5, 0.6], [0.55, 0.45]], rule())
    results = await close.score(TASK, PREFIX, ["c0", "c1"])
    assert [(r.stopped, len(r.samples)) for r in results] == [("max_samples", 16)] * 2


async def test_never_stops_before_samples_min_and_uses_indices_in_order():
    mr, _ = reward_with([[1.0], [0.0]], rule(samples_min=5))
    results = await mr.score(TASK, PREFIX, ["c0", "c1"])
    for r in results:
        assert len(r.samples) >= 5
        assert [s.future.sample_index for s in r.samples] == list(range(len(r.samples)))


async def test_a_middle_candidate_stops_once_it_is_neither_best_nor_worst():
    values = [[1.0, 0.95], [0.0, 0.05], [0.5, 0.55], [0.52, 0.47]]
    mr, _ = reward_with(values, rule(samples_min=4, samples_max=64))
    results = await mr.score(TASK, PREFIX, ["c0", "c1", "c2", "c3"])
    assert all(r.stopped == "settled" for r in results)


async def test_a_cut_candidate_cannot_settle_the_race_as_the_best():
    # c0 (cut: only ever a rejected reply) is clearly best; the pair the export would form is
    # c1 vs c2, which are close, so the race must keep sampling them to samples_max.
    values = [[1.0, 0.95], [0.5, 0.6], [0.55, 0.45]]
    mr, _ = reward_with(values, rule())
    results = await mr.score(TASK, PREFIX, ["c0", "c1", "c2"], choosable=[False, True, True])
    assert [(r.stopped, len(r.samples)) for r in results[1:]] == [("max_samples", 16)] * 2
    assert results[0].stopped == "settled" and len(results[0].samples) < 16  # never best or worst
    unaware, _ = reward_with(values, rule())
    assert all(
        r.stopped == "settled" for r in await unaware.score(TASK, PREFIX, ["c0", "c1", "c2"])
    )


async def test_estimate_mode_stops_at_the_target_standard_error():
    target = 0.1
    mr, _ = reward_with(
        [[0.4, 0.6], [0.0, 1.0]], rule("estimate", target_stderr=target, samples_max=64)
    )
    steady, noisy = await mr.score(TASK, PREFIX, ["c0", "c1"])
    assert steady.stopped == noisy.stopped == "settled"
    assert len(steady.samples) < len(noisy.samples) <= 64
    assert mr.adaptive.stderr([s.reward for s in noisy.samples]) <= target


async def test_off_is_the_fixed_sample_count_exactly():
    values = [[0.9, 1.0], [0.0, 0.1]]
    fixed, fixed_metric = reward_with(values, None, samples=4)
    a = await fixed.score(TASK, PREFIX, ["c0", "c1"])
    user_calls = fixed.sampler.user.backend.calls
    assert [len(r.samples) for r in a] == [4, 4] and all(r.stopped is None for r in a)
    assert sorted(c.params.first_sample for c in user_calls) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert fixed_metric.calls == 8


async def test_adaptive_futures_are_the_fixed_runs_first_futures():
    values = [[0.9, 1.0], [0.0, 0.1]]
    fixed, _ = reward_with(values, None, samples=16)
    adaptive, _ = reward_with(values, rule())
    every = await fixed.score(TASK, PREFIX, ["c0", "c1"])
    some = await adaptive.score(TASK, PREFIX, ["c0", "c1"])
    for f, a in zip(every, some):
        assert [s.model_dump() for s in a.samples] == [
            s.model_dump() for s in f.samples[: len(a.samples)]
        ]


def test_config_needs_a_reward_range_and_reads_yaml_off():
    with pytest.raises(ValueError, match="reward_range"):
        RewardConfig(adaptive="pairs")
    assert load_config(None, ["reward.adaptive=off"]).reward.adaptive == "off"
    config = load_config(None, ["reward.adaptive=pairs", "reward.reward_range=[-1, 1]"])
    assert config.reward.reward_range == (-1.0, 1.0)


def engine_with(tmp_path, adaptive):
    user = UserSimulator(
        ScriptedBackend(reply_fn=lambda m, p, i: json.dumps({"message": f"same s{i}"})),
        max_reasks=0,
    )
    backend = ScriptedBackend(reply_fn=lambda m, p, i: f"c{i % 2}")
    values = [[0.9, 1.0], [0.0, 0.1]]
    mr, _ = reward_with(values, adaptive)
    config = GenerateConfig(candidates=2, proactive_share=0, max_turns=1)
    return DataEngine(
        config, user=user, policy=Assistant(backend), proactive=Assistant(backend), reward=mr
    ), backend


async def test_engine_records_counts_and_reasons_and_the_report_shows_them(tmp_path):
    engine, _ = engine_with(tmp_path, rule())
    await engine.run([TASK], tmp_path)
    [turn] = read_jsonl(tmp_path / "turns.jsonl")
    assert [c["stopped"] for c in turn["candidates"]] == ["settled", "settled"]
    assert all(2 <= len(c["sample_rewards"]) < 16 for c in turn["candidates"])
    run = load_run(tmp_path)
    assert run["counts"]["sampling_stopped"] == {"settled": 2}
    assert [c["stopped"] for c in run["conversations"][0]["steps"][0]["candidates"]] == [
        "settled"
    ] * 2


async def test_tasks_with_the_same_opening_get_different_candidate_requests(tmp_path):
    tasks = [Task(id=f"same-{i}", description="chat", intent="identical") for i in range(2)]
    firsts = []
    for attempt in range(2):
        engine, backend = engine_with(tmp_path / str(attempt), None)
        await engine.run(tasks, tmp_path / str(attempt))
        candidates = [c for c in backend.calls if c.params.n == 2]
        firsts.append(sorted(c.params.first_sample for c in candidates))
    offsets = sorted(candidate_offset(t.id) for t in tasks)
    assert firsts[0] == firsts[1] == offsets and offsets[0] != offsets[1]
    assert candidate_offset("same-0") == 466186240  # sha256 of the id: the same in every process
    assert all(o % 1024 == 0 and o < 2**30 for o in offsets)


def test_the_benchmark_environment_runs_at_a_tiny_size():
    spec = importlib.util.spec_from_file_location(
        "adaptive_mr", ROOT / "benchmarks" / "adaptive_mr.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for q in bench.LEVELS:
        probs = bench.grade_probs(q)
        assert sum(probs.values()) == pytest.approx(1) and min(probs.values()) >= 0
        assert 0.5 * probs["2"] + probs["3"] == pytest.approx(q)
    fixed = asyncio.run(bench.accuracy_run(6, 8, 2, False, 0.95))
    adaptive = asyncio.run(bench.accuracy_run(6, 8, 2, True, 0.95))
    assert fixed["pairs"] >= 1 and adaptive["pairs"] >= 1
    assert adaptive["requests"] <= fixed["requests"]
    assert set(adaptive["stopped"]) <= {"settled", "max_samples"} and not fixed["stopped"]
    assert set(bench.compare(fixed, adaptive)) == {
        "requests_ratio",
        "tokens_ratio",
        "accuracy_drop",
        "pairs_ratio",
    }
