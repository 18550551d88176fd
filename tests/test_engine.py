"""The data engine with scripted roles: records, choices, failures as data, resume, threshold."""

import json

import pytest

from collabrl.backends.errors import RequestRejectedError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import GenerateConfig
from collabrl.engine import Candidate, DataEngine, EngineStopped, best_candidate
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.records import read_jsonl
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.simulator import UserSimulator
from collabrl.types import Task


def user_reply(messages, params, index):
    """Opens with the task id; ends the chat once the assistant said 'final'."""
    last = messages[-1].content
    if "final" in last:
        return json.dumps({"message": "", "terminate": True})
    if "has not started" in last:
        task_id = messages[0].content.split("ID:")[1].split()[0]
        return json.dumps({"message": f"help with {task_id}"})
    return json.dumps({"message": f"more about it, draft {index}"})


def policy_reply(fail_ids=()):
    def reply(messages, params, index):
        opening = next(m.content for m in messages if m.role == "user")
        if any(f"help with {i}" == opening for i in fail_ids):
            raise RequestRejectedError("content policy", status=400)
        proactive = messages[0].role == "system"
        turns = sum(1 for m in messages if m.role == "assistant")
        if turns >= 1:
            return "final answer, short"
        return "What exactly?" if proactive else f"A much longer answer number {index} " * 3

    return reply


def make_engine(tmp_path, *, fail_ids=(), samples=2, window=1, **config):
    user = UserSimulator(ScriptedBackend(reply_fn=user_reply), max_reasks=0)
    backend = ScriptedBackend(reply_fn=policy_reply(fail_ids))
    policy = Assistant(backend)
    proactive = Assistant(backend, system_prompt="ask questions")
    sampler = ForwardSampler(user, policy, samples=samples, window=window)
    metric = TokenEfficiency(form="penalty", lam=0.01)
    reward = MultiturnReward({"token_efficiency": WeightedMetric(metric, 1.0)}, sampler)
    cfg = GenerateConfig(candidates=3, max_turns=4, **config)
    return DataEngine(cfg, user=user, policy=policy, proactive=proactive, reward=reward), backend


def tasks(n):
    return [
        Task(id=f"t{i:04d}", description="chat", intent=f"ID:t{i:04d} need help") for i in range(n)
    ]


async def test_records_choice_and_best_path(tmp_path):
    engine, _ = make_engine(tmp_path)
    outcomes = await engine.run(tasks(2), tmp_path)
    assert outcomes == {"ok": 2}
    turns = list(read_jsonl(tmp_path / "turns.jsonl"))
    first = next(t for t in turns if t["conversation_id"] == "t0000" and t["turn"] == 0)
    sources = [c["source"] for c in first["candidates"]]
    assert sources.count("proactive") == 1 and sources.count("policy") == 2
    mrs = [c["mr"] for c in first["candidates"]]
    assert first["chosen"] == mrs.index(max(mrs))
    assert first["candidates"][first["chosen"]]["text"] == "What exactly?"  # shortest wins
    assert len(first["candidates"][0]["futures"]) == 2
    convs = {c["conversation_id"]: c for c in read_jsonl(tmp_path / "conversations.jsonl")}
    messages = convs["t0000"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == "What exactly?"
    # The next user message came from the chosen candidate's first future.
    assert messages[2]["content"] == "more about it, draft 0"
    assert convs["t0000"]["ended"] == "user_terminated" and all(m["content"] for m in messages)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {f["file"]: f["rows"] for f in manifest["files"]} == {
        "turns.jsonl": len(turns),
        "conversations.jsonl": 2,
    }


async def test_thousand_conversations_with_three_percent_permanent_failures(tmp_path):
    fail = [f"t{i:04d}" for i in range(0, 1000, 34)][:30]
    engine, _ = make_engine(tmp_path, fail_ids=fail, samples=1, conversations_in_flight=64)
    outcomes = await engine.run(tasks(1000), tmp_path)
    assert outcomes == {"ok": 970, "failed": 30}
    convs = list(read_jsonl(tmp_path / "conversations.jsonl"))
    failed = [c for c in convs if c["status"] == "failed"]
    assert sorted(c["conversation_id"] for c in failed) == sorted(fail)
    assert {c["reason"] for c in failed} == {"policy_error:rejected:400"}
    assert len({c["conversation_id"] for c in convs}) == 1000
    for turn in read_jsonl(tmp_path / "turns.jsonl"):
        assert all(c["text"].strip() for c in turn["candidates"])
        assert all(m["content"].strip() for m in turn["prefix"])


async def test_rerun_skips_finished_and_adds_no_duplicates(tmp_path):
    engine, backend = make_engine(tmp_path)
    await engine.run(tasks(3), tmp_path)
    calls = len(backend.calls)
    engine2, backend2 = make_engine(tmp_path)
    outcomes = await engine2.run(tasks(5), tmp_path)
    assert outcomes == {"ok": 2}  # only the two new tasks
    keys = [(t["conversation_id"], t["turn"]) for t in read_jsonl(tmp_path / "turns.jsonl")]
    assert len(keys) == len(set(keys))
    assert len(list(read_jsonl(tmp_path / "conversations.jsonl"))) == 5
    assert calls > 0 and not any("t0000" in str(c.messages) for c in backend2.calls)


async def test_unfinished_conversation_is_replayed_without_duplicate_turns(tmp_path):
    engine, _ = make_engine(tmp_path)
    await engine.run(tasks(1), tmp_path)
    # Simulate a crash after the turn records but before the conversation record.
    (tmp_path / "conversations.jsonl").write_text("")
    engine2, _ = make_engine(tmp_path)
    await engine2.run(tasks(1), tmp_path)
    keys = [(t["conversation_id"], t["turn"]) for t in read_jsonl(tmp_path / "turns.jsonl")]
    assert len(keys) == len(set(keys)) == 2


async def test_failure_rate_over_threshold_stops_with_a_clear_message(tmp_path):
    fail = [f"t{i:04d}" for i in range(10)]
    engine, _ = make_engine(
        tmp_path,
        fail_ids=fail,
        max_failure_rate=0.2,
        min_conversations_for_failure_rate=5,
        conversations_in_flight=1,
    )
    with pytest.raises(
        EngineStopped, match=r"5 of 5 conversations failed .*policy_error:rejected:400"
    ):
        await engine.run(tasks(20), tmp_path)
    assert len(list(read_jsonl(tmp_path / "conversations.jsonl"))) == 5


def test_best_candidate_ignores_unscored_and_breaks_ties_by_order():
    class R:
        def __init__(self, mr):
            self.mr = mr

    def plain(n):
        return [Candidate(f"reply {i}", "policy") for i in range(n)]

    assert best_candidate([R(None), R(0.5), R(0.5), R(0.1)], plain(4)) == 1
    assert best_candidate([R(None), R(None)], plain(2)) is None


def test_best_candidate_never_picks_a_cut_reply():
    class R:
        def __init__(self, mr):
            self.mr = mr

    candidates = [Candidate("long, cut", "policy", cut=True), Candidate("short", "proactive")]
    assert best_candidate([R(0.9), R(0.2)], candidates) == 1
    assert best_candidate([R(0.9), None], candidates) is None
