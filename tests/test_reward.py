"""The multiturn-aware reward: hand-computed means, unscored exclusion, concurrency."""

import asyncio
import json
import statistics

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.reward import FutureReward, MultiturnReward, WeightedMetric, combine
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, Score, Task

TASK = Task(id="t", description="chat", intent="anything")
PREFIX = Conversation.of(("user", "help me"))


def user_backend():
    return ScriptedBackend(reply_fn=lambda m, p, i: json.dumps({"message": f"user s{i}"}))


def policy_backend():
    return ScriptedBackend(reply_fn=lambda m, p, i: f"assistant s{i}")


class SampleIndexMetric:
    """Scores a future by the sample index in its last message: s0 -> 0.0, s1 -> 0.1, ..."""

    def __init__(self, name, unscored_on=(), delay=0.0):
        self.name = name
        self.unscored_on = set(unscored_on)
        self.delay = delay
        self.calls = 0

    async def __call__(self, conversation, task):
        self.calls += 1
        await asyncio.sleep(self.delay)
        index = int(conversation.last.content.rsplit("s", 1)[1])
        if index in self.unscored_on:
            return Score.unscored("judge_unparsable")
        return Score(value=index / 10)


class CandidateLength:
    name = "length"

    async def __call__(self, conversation, task):
        return Score(value=float(len(conversation.messages[1].content)))


def reward(metrics, samples=3, window=1):
    sampler = ForwardSampler(
        UserSimulator(user_backend()), Assistant(policy_backend()), samples=samples, window=window
    )
    return MultiturnReward(metrics, sampler)


async def test_mr_equals_hand_computation():
    mr = reward(
        {
            "idx": WeightedMetric(SampleIndexMetric("idx"), 2.0),
            "len": WeightedMetric(CandidateLength(), -0.5),
        }
    )
    [a, b] = await mr.score(TASK, PREFIX, ["short", "a much longer reply"])
    # Sample j scores 2 * j/10 - 0.5 * len(candidate)
    expected_a = [2 * j / 10 - 0.5 * 5 for j in range(3)]
    assert a.mr == pytest.approx(statistics.fmean(expected_a))
    assert a.stderr == pytest.approx(statistics.stdev(expected_a) / 3**0.5)
    assert [s.reward for s in a.samples] == pytest.approx(expected_a)
    assert a.metric_means == pytest.approx({"idx": 0.1, "len": 5.0})
    assert b.mr == pytest.approx(statistics.fmean([2 * j / 10 - 0.5 * 19 for j in range(3)]))
    assert a.unscored == 0 and len(a.futures) == 3


async def test_unscored_samples_are_excluded_not_zero():
    mr = reward({"idx": WeightedMetric(SampleIndexMetric("idx", unscored_on={0}), 1.0)})
    [c] = await mr.score(TASK, PREFIX, ["x"])
    assert c.mr == pytest.approx(statistics.fmean([0.1, 0.2]))
    assert c.unscored == 1
    assert c.samples[0].reward is None and "judge_unparsable" in c.samples[0].reason


async def test_candidate_with_no_scored_sample_is_unscored():
    mr = reward({"idx": WeightedMetric(SampleIndexMetric("idx", unscored_on={0, 1, 2}), 1.0)})
    [c] = await mr.score(TASK, PREFIX, ["x"])
    assert c.mr is None and not c.scored and c.unscored == 3 and c.metric_means["idx"] is None


async def test_zero_weight_metrics_are_reported_but_do_not_count():
    mr = reward(
        {
            "idx": WeightedMetric(SampleIndexMetric("idx"), 1.0),
            "watch": WeightedMetric(SampleIndexMetric("watch", unscored_on={0, 1, 2}), 0.0),
        }
    )
    [c] = await mr.score(TASK, PREFIX, ["x"])
    assert c.mr == pytest.approx(0.1) and c.unscored == 0


async def test_failed_futures_are_excluded():
    def flaky_user(messages, params, index):
        if index == 2:
            return "never json"
        return json.dumps({"message": "more"})

    sampler = ForwardSampler(
        UserSimulator(ScriptedBackend(reply_fn=flaky_user), max_reasks=0),
        Assistant(policy_backend()),
        samples=3,
        window=1,
    )
    metric = SampleIndexMetric("idx")
    [c] = await MultiturnReward({"idx": WeightedMetric(metric, 1.0)}, sampler).score(
        TASK, PREFIX, ["x"]
    )
    assert c.unscored == 1 and metric.calls == 2
    assert c.samples[2].reason == "user_unparsable"


async def test_candidates_samples_and_metrics_run_concurrently():
    metrics = {
        f"m{k}": WeightedMetric(SampleIndexMetric(f"m{k}", delay=0.2), 1.0) for k in range(3)
    }
    mr = reward(metrics, samples=3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await mr.score(TASK, PREFIX, ["a", "b", "c"])
    assert loop.time() - started < 0.5  # 27 metric calls of 0.2 s each, all at once
    assert all(r.scored for r in results)


async def test_prefix_must_end_with_user_and_weights_needed():
    mr = reward({"idx": WeightedMetric(SampleIndexMetric("idx"), 1.0)})
    with pytest.raises(ValueError):
        await mr.score(TASK, Conversation.of(("user", "a"), ("assistant", "b")), ["x"])
    with pytest.raises(ValueError):
        reward({"idx": WeightedMetric(SampleIndexMetric("idx"), 0.0)})


class DocumentOnly(SampleIndexMetric):
    artifact = "document"


async def test_task_metrics_for_other_artifacts_are_skipped_not_unscored():
    doc_metric = DocumentOnly("bleu")
    mr = reward(
        {
            "idx": WeightedMetric(SampleIndexMetric("idx"), 1.0),
            "bleu": WeightedMetric(doc_metric, 5.0),
        }
    )
    [c] = await mr.score(TASK, PREFIX, ["x"])  # TASK.artifact is "none"
    assert c.mr == pytest.approx(0.1) and doc_metric.calls == 0
    assert "bleu" not in c.metric_means and c.unscored == 0
    doc_task = TASK.model_copy(update={"artifact": "document"})
    [d] = await mr.score(doc_task, PREFIX, ["x"])
    assert d.mr == pytest.approx(6 * 0.1) and doc_metric.calls == 3


async def test_no_applicable_weighted_metric_is_unscored():
    mr = reward({"bleu": WeightedMetric(DocumentOnly("bleu"), 1.0)})
    [c] = await mr.score(TASK, PREFIX, ["x"])
    assert c.mr is None and c.samples[0].reason == "no weighted metric applies to this task"


@pytest.mark.parametrize(("samples", "window", "futures"), [(3, 1, 3), (4, 0, 1)])
async def test_the_sampler_alone_decides_how_many_futures_a_reply_gets(samples, window, futures):
    mr = reward({"len": WeightedMetric(CandidateLength(), 1.0)}, samples, window)
    scored = await mr.score_one(TASK, PREFIX, "reply")
    sampled = await mr.sampler.sample(TASK, PREFIX.append("assistant", "reply"))
    assert mr.sampler.future_count == len(scored.futures) == len(sampled) == futures


def test_combine_returns_a_typed_reward_or_the_reason_it_has_none():
    metrics = {
        "a": WeightedMetric(SampleIndexMetric("a"), 2.0),
        "b": WeightedMetric(SampleIndexMetric("b"), 0.0),
    }
    scored = combine({"a": Score(value=0.5), "b": Score.unscored("judge_unparsable")}, metrics)
    assert scored == FutureReward(reward=1.0, reason=None)
    unscored = combine({"a": Score.unscored("judge_unparsable"), "b": Score(value=1.0)}, metrics)
    assert unscored.reward is None and unscored.reason == "unscored: a=judge_unparsable"
