"""The efficacy benchmark's controlled pieces: its request file, the scripted user that reveals
the hidden detail only when asked, and the deterministic reward. No model is loaded."""

import importlib.util
import json
from pathlib import Path

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import ForwardSampler, Policy
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, GenerationParams

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("efficacy_clarify",
                                                  ROOT / "benchmarks" / "efficacy_clarify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(bench):
    return bench.load_requests(bench.REQUESTS)


def test_request_file_is_what_the_templates_make(bench, rows):
    assert rows == json.loads(json.dumps(bench.make_requests()))


def test_eval_requests_are_held_out(rows):
    train = [r for r in rows if r["split"] == "train"]
    held_out = [r for r in rows if r["split"] == "eval"]
    assert len(train) >= 100 and len(held_out) >= 60
    assert not {r["template"] for r in train} & {r["template"] for r in held_out}
    for split in (train, held_out):
        assert len({r["request"] for r in split}) == len(split)  # no two prompts read the same
    for r in rows:
        assert r["keyword"] in r["detail"] and r["keyword"].lower() not in r["request"].lower()


def _user(bench, task):
    return UserSimulator(ScriptedBackend(reply_fn=bench.ScriptedUser([task])), max_reasks=0)


async def test_scripted_user_reveals_the_detail_only_when_asked(bench, rows):
    task = bench.to_task(rows[0])
    user = _user(bench, task)
    opening = await user.next_turn(task, Conversation())
    assert opening.message == rows[0]["request"] and not opening.terminated
    start = Conversation().append("user", opening.message)

    asked = await user.next_turn(task, start.append("assistant", "Sure! Who is it for?"))
    assert asked.message == rows[0]["detail"] and not asked.terminated
    guessed = await user.next_turn(task, start.append("assistant", "Happy birthday, dear friend!"))
    assert rows[0]["keyword"] not in guessed.message and not guessed.terminated
    done = await user.next_turn(task, start.append("assistant", f"Happy birthday, {rows[0]['keyword']}!"))
    assert done.terminated


async def test_reward_prefers_the_question_that_gets_the_detail(bench, rows):
    row = rows[0]
    task = bench.to_task(row)
    keyword = row["keyword"]

    def assistant(messages, params, index):  # uses the detail once the user has given it
        return f"Happy birthday, {keyword}!" if keyword in messages[-1].content else "Happy birthday!"

    policy = Policy(ScriptedBackend(reply_fn=assistant), GenerationParams())
    reward = MultiturnReward(
        {"detail_in_final_reply": WeightedMetric(bench.DetailInFinalReply(), 1.0),
         "turn_cost": WeightedMetric(bench.TurnCost(), 1.0)},
        ForwardSampler(_user(bench, task), policy, samples=2, window=1),
    )
    prefix = Conversation().append("user", row["request"])
    ask, guess = await reward.score(task, prefix, ["Who is the friend?", "Happy birthday, friend!"])
    assert ask.mr == pytest.approx(1 - 2 * bench.TURN_COST)
    assert guess.mr == pytest.approx(-2 * bench.TURN_COST)
    assert bench.asks_question(ask.reply) and not bench.asks_question(guess.reply)
