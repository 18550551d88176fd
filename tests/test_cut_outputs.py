"""Replies cut by the length limit are flagged and never taken as finished turns: a cut user
message is re-asked, a cut candidate is never chosen (nor exported as chosen), a future with a
cut reply is unscored by default, evaluation counts cut replies, and the cache replays the flag."""

import json

from collabrl.backends.cache import CachedBackend, ResponseCache
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import ExportConfig, GenerateConfig
from collabrl.engine import DataEngine, candidate_offset
from collabrl.export import export
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.records import read_jsonl
from collabrl.report.data import load_run
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler, run_conversation
from collabrl.simulator import UserSimulator
from collabrl.types import Completion, Conversation, GenerationParams, Message, Score, Task

TASK = Task(id="t0", description="chat", intent="a short plan for the week")
PREFIX = Conversation.of(("user", "help me plan"))
LONG = " ".join(["cut"] * 40)  # the engine strips replies; so does this
OFFSET = candidate_offset(TASK.id)  # the first sample index of TASK's candidates


def cut(text: str) -> Completion:
    return Completion(text=text, finish_reason="length")


def user_reply(messages, params, index):
    if "has not started" in messages[-1].content:
        return json.dumps({"message": "help me plan"})
    return json.dumps({"message": "", "terminate": True})


def user() -> UserSimulator:
    return UserSimulator(ScriptedBackend(reply_fn=user_reply), max_reasks=0)


async def test_a_cut_user_reply_is_reasked_and_never_becomes_the_message():
    backend = ScriptedBackend(
        [cut("I would like a plan for the wee"), "a plan for the week, short"]
    )
    sim = UserSimulator(backend, reply_format="plain")
    turn = await sim.next_turn(TASK, Conversation())
    assert turn.message == "a plan for the week, short" and "reasked_after_cut" in turn.flags
    assert "cut off by the length limit" in backend.calls[1].messages[-1].content


async def test_trim_keeps_the_whole_sentences_of_a_cut_plain_message_and_flags_it():
    backend = ScriptedBackend([cut("Hi. I need a plan for the wee"), cut("no sentence ends her")])
    sim = UserSimulator(backend, reply_format="plain", cut_messages="trim", max_reasks=0)
    turn = await sim.next_turn(TASK, Conversation())
    assert turn.message == "Hi." and "trimmed_after_cut" in turn.flags
    turn = await sim.next_turn(TASK, Conversation.of(("user", "a"), ("assistant", "b")))
    assert turn.failure == "user_cut"  # nothing whole to keep
    json_sim = UserSimulator(
        ScriptedBackend([cut('{"message": "Hi."}')]), cut_messages="trim", max_reasks=0
    )
    assert (await json_sim.next_turn(TASK, Conversation())).failure == "user_cut"  # JSON: never


async def test_a_user_reply_cut_on_every_try_is_a_user_cut_failure():
    sim = UserSimulator(ScriptedBackend([cut('{"message": "plan"}')]), max_reasks=1)
    turn = await sim.next_turn(TASK, Conversation())
    assert turn.failure == "user_cut" and turn.message == ""


async def test_a_cut_assistant_reply_is_flagged_in_the_rollout():
    policy = Assistant(ScriptedBackend(reply_fn=lambda m, p, i: cut("Monday: gym, Tuesday: re")))
    rollout = await run_conversation(TASK, policy, user(), max_turns=1)
    assert rollout.flags == ("policy_cut@1",) and rollout.cut_replies == 1 and not rollout.failed


class Constant:
    name = "constant"

    async def __call__(self, conversation, task):
        return Score(value=1.0)


def future_user(messages, params, index):
    return json.dumps({"message": f"and then? {index}"})


def reward_with(cut_futures: str) -> MultiturnReward:
    policy = Assistant(
        ScriptedBackend(
            reply_fn=lambda m, p, i: cut("a reply the limit c") if i == 0 else "a whole reply"
        )
    )
    sampler = ForwardSampler(
        UserSimulator(ScriptedBackend(reply_fn=future_user)), policy, samples=2, window=1
    )
    return MultiturnReward(
        {"constant": WeightedMetric(Constant(), 1.0)}, sampler, cut_futures=cut_futures
    )


async def test_a_future_with_a_cut_reply_is_unscored_by_default():
    [result] = await reward_with("unscored").score(TASK, PREFIX, ["candidate"])
    assert [s.reward for s in result.samples] == [None, 1.0]
    assert result.samples[0].reason == "future_cut" and result.unscored == 1
    [result] = await reward_with("scored").score(TASK, PREFIX, ["candidate"])
    assert [s.reward for s in result.samples] == [1.0, 1.0]
    assert result.samples[0].future.cut_replies == 1


def cut_policy(messages, params, index):
    """Candidate 0 is long and cut; candidates 1 and 2 are complete, 2 longer than 1."""
    if any(m.role == "assistant" for m in messages):
        return "done"
    index -= OFFSET
    return cut(LONG) if index == 0 else ("a complete reply, " * index).strip()


def engine(tmp_path, **config) -> tuple[DataEngine, ScriptedBackend]:
    backend = ScriptedBackend(reply_fn=cut_policy)
    policy = Assistant(backend)
    sampler = ForwardSampler(user(), policy, samples=1, window=1)
    reward = MultiturnReward(
        {"eff": WeightedMetric(TokenEfficiency(form="penalty", lam=0.01), 1.0)}, sampler
    )
    cfg = GenerateConfig(candidates=3, proactive_share=0, max_turns=2, **config)
    return DataEngine(cfg, user=user(), policy=policy, proactive=policy, reward=reward), backend


async def test_a_cut_candidate_is_recorded_unscored_never_chosen_and_counted(tmp_path):
    data_engine, _ = engine(tmp_path)
    assert await data_engine.run([TASK], tmp_path) == {"ok": 1}
    [turn, *_] = read_jsonl(tmp_path / "turns.jsonl")
    first = turn["candidates"][0]
    assert first["text"] == LONG and first["cut"] and first["mr"] is None
    assert first["reasons"] == ["cut_by_length"] and turn["chosen"] != 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["cut_outputs"]["candidates"] == 1  # one turn: then the user ends the chat
    counts = load_run(tmp_path)["counts"]
    assert counts["candidates_cut"] == 1 and counts["candidates_unscored"] == 1


async def test_a_scored_cut_candidate_can_be_rejected_but_never_chosen(tmp_path):
    data_engine, _ = engine(tmp_path / "gen", cut_candidates="scored")
    await data_engine.run([TASK], tmp_path / "gen")
    [turn, *_] = read_jsonl(tmp_path / "gen/turns.jsonl")
    assert turn["candidates"][0]["cut"] and turn["candidates"][0]["mr"] is not None
    assert turn["chosen"] == 1
    report = export(
        ExportConfig(
            input_dir=tmp_path / "gen",
            output_dir=tmp_path / "out",
            save_dataset=False,
            eval_fraction=0,
            min_gap=0,
        )
    )
    pairs = list(read_jsonl(tmp_path / "out/dpo_train.jsonl"))
    assert report["dpo"]["kept"] == len(pairs) >= 1
    assert pairs[0]["rejected"][0]["content"] == LONG  # the cut reply: a fine negative
    assert all(p["chosen"][0]["content"] != LONG for p in pairs)


async def test_trimmed_candidates_keep_their_whole_sentences_and_are_flagged(tmp_path):
    backend = ScriptedBackend(
        reply_fn=lambda m, p, i: cut(f"Plan {i - OFFSET}. Monday: gym, Tuesday: re")
    )
    policy = Assistant(backend)
    reward = MultiturnReward(
        {"eff": WeightedMetric(TokenEfficiency(form="penalty"), 1.0)},
        ForwardSampler(user(), policy, samples=1, window=0),
    )
    data_engine = DataEngine(
        GenerateConfig(candidates=2, proactive_share=0, max_turns=1, cut_candidates="trim"),
        user=user(),
        policy=policy,
        proactive=policy,
        reward=reward,
    )
    assert await data_engine.run([TASK], tmp_path) == {"ok": 1}
    [turn] = read_jsonl(tmp_path / "turns.jsonl")
    assert [c["text"] for c in turn["candidates"]] == ["Plan 0.", "Plan 1."]
    assert all(c["trimmed"] and not c["cut"] for c in turn["candidates"])
    assert turn["chosen"] == 0 and data_engine.cut["candidates_trimmed"] == 2
    assert load_run(tmp_path)["counts"]["candidates_trimmed"] == 2


async def test_a_turn_whose_every_candidate_is_cut_fails_the_conversation(tmp_path):
    backend = ScriptedBackend(reply_fn=lambda m, p, i: cut(f"cut {i}"))
    policy = Assistant(backend)
    reward = MultiturnReward(
        {"eff": WeightedMetric(TokenEfficiency(form="penalty"), 1.0)},
        ForwardSampler(user(), policy, samples=1, window=1),
    )
    data_engine = DataEngine(
        GenerateConfig(candidates=2, proactive_share=0),
        user=user(),
        policy=policy,
        proactive=policy,
        reward=reward,
    )
    assert await data_engine.run([TASK], tmp_path) == {"failed": 1}
    [record] = read_jsonl(tmp_path / "conversations.jsonl")
    assert record["reason"] == "every_candidate_cut"
    assert len(backend.calls) == 1  # no future was sampled for a cut candidate


async def test_the_cache_replays_a_cut_reply_with_its_flag(tmp_path):
    inner = ScriptedBackend([cut("half a rep")])
    cache = ResponseCache(tmp_path / "cache.sqlite")
    backend = CachedBackend(inner, cache)
    messages = [Message(role="user", content="hi")]
    first = await backend.generate(messages, GenerationParams(max_tokens=3))
    again = await backend.generate(messages, GenerationParams(max_tokens=3))
    assert first[0].cut and again[0].cut and again[0].cached and len(inner.calls) == 1
    cache.close()


def test_evaluation_counts_cut_replies_against_the_system_that_wrote_them():
    from collabrl.evaluate import summarise, table_markdown

    row = {
        "system": "base",
        "task_id": "t0",
        "seed": 0,
        "metric": "accuracy",
        "score": 1.0,
        "itr_grade": 3,
        "assistant_tokens": 900,
        "turns": 2,
        "satisfied": True,
        "error": None,
        "cut_replies": 2,
    }
    summary = summarise([row], ["base"], resamples=100)
    figures = summary["accuracy"]["systems"]["base"]
    assert figures["cut_replies"] == 2 and figures["score"]["mean"] == 100.0  # still scored
    assert "base: 2 replies cut by the length limit" in table_markdown(summary, ["base"])
