"""The budget governor: what counts (requests past the cache, fresh tokens, money), the stop
rule (no new conversation near a cap, no new call at it), abandoned conversations leave no
record, a rerun with a larger cap ends like an uncapped run, and the commands exit with 3."""

import json

import pytest

from collabrl.backends.cache import CachedBackend, ResponseCache
from collabrl.backends.scripted import ScriptedBackend
from collabrl.backends.stack import Roles
from collabrl.budget import Budget, BudgetExceeded
from collabrl.cli import main
from collabrl.config import BudgetConfig, ConfigError, GenerateConfig, PriceConfig, load_config
from collabrl.engine import DataEngine
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.records import read_jsonl
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.simulator import UserSimulator
from collabrl.types import GenerationParams, Message, Task

MSG = [Message(role="user", content="one two three")]
UNCAPPED = 10**9


def user_reply(messages, params, index):
    """Opens with the task id; a few turns in, ends the chat."""
    last = messages[-1].content
    if "has not started" in last:
        return json.dumps(
            {"message": f"help with {messages[0].content.split('ID:')[1].split()[0]}"}
        )
    if "final" in last:
        return json.dumps({"message": "", "terminate": True})
    return json.dumps({"message": f"more, draft {index}"})


def policy_reply(messages, params, index):
    if sum(m.role == "assistant" for m in messages) >= 1:
        return "final answer"
    return "What exactly?" if messages[0].role == "system" else f"A long answer {index} " * 3


def make_engine(folder, caps):
    """The data engine with scripted roles behind a budget and one response cache."""
    budget = Budget(BudgetConfig(**caps))
    cache = ResponseCache(folder / "cache.sqlite")

    def role(name, reply):
        return CachedBackend(budget.guard(ScriptedBackend(reply_fn=reply), name, None), cache)

    user = UserSimulator(role("user", user_reply), max_reasks=0)
    policy_backend = role("policy", policy_reply)
    policy, proactive = Assistant(policy_backend), Assistant(policy_backend, system_prompt="ask")
    reward = MultiturnReward(
        {"token_efficiency": WeightedMetric(TokenEfficiency(form="penalty", lam=0.01), 1.0)},
        ForwardSampler(user, policy, samples=2, window=1),
    )
    config = GenerateConfig(candidates=3, max_turns=3, conversations_in_flight=1)
    engine = DataEngine(
        config, user=user, policy=policy, proactive=proactive, reward=reward, budget=budget
    )
    return engine, cache


async def generate(folder, **caps):
    engine, cache = make_engine(folder, caps)
    try:
        await engine.run(TASKS, folder / "out")
    finally:
        cache.close()
    return engine.budget


TASKS = [Task(id=f"t{i}", description="chat", intent=f"ID:t{i} need help") for i in range(6)]


def rows(folder, name):
    return sorted(json.dumps(r, sort_keys=True) for r in read_jsonl(folder / "out" / name))


def test_projection_refuses_a_start_that_would_exceed_a_cap():
    budget = Budget(BudgetConfig(tokens=160))
    budget.total.tokens, budget.finished = 100, 2
    assert budget.refusal(in_flight=0) is None  # 100 + 50 x 1 <= 160
    assert "would be exceeded" in budget.refusal(in_flight=1)  # 100 + 50 x 2 > 160
    budget.total.tokens = 160
    assert "budget.tokens=160 reached" in budget.refusal(in_flight=0)


async def test_requests_past_the_cache_count_and_a_reached_cap_refuses_new_calls(tmp_path):
    budget = Budget(BudgetConfig(requests=1, roles={"judge": {"tokens": 1000}}))
    cache = ResponseCache(tmp_path / "cache.sqlite")
    backend = CachedBackend(budget.guard(ScriptedBackend("a b"), "judge", None), cache)
    await backend.generate(MSG, GenerationParams())
    await backend.generate(MSG, GenerationParams())  # a cache hit: free, and still answered
    assert (budget.total.requests, budget.total.tokens, budget.roles["judge"].tokens) == (1, 5, 5)
    with pytest.raises(BudgetExceeded, match="budget.requests=1 reached"):
        await backend.generate(MSG, GenerationParams(first_sample=1))
    cache.close()


async def test_money_counts_at_the_roles_price_and_needs_every_called_role_priced(workdir):
    budget = Budget(BudgetConfig(usd=1.0))
    price = PriceConfig(input_per_mtok=1e5, output_per_mtok=2e5)
    await budget.guard(ScriptedBackend("a b"), "judge", price).generate(MSG, GenerationParams())
    assert budget.total.usd == pytest.approx((3 * 1e5 + 2 * 2e5) / 1e6)
    config = load_config("configs/scripted.yaml", ["budget.usd=1"])
    async with Roles(config, budget=Budget(config.budget)) as roles:
        with pytest.raises(ConfigError, match="role 'user' has no price"):
            roles["user"]
    with pytest.raises(ConfigError, match="budget.roles.user.usd: the role has no price"):
        load_config("configs/scripted.yaml", ["budget.roles.user.usd=1"])


@pytest.mark.parametrize("share", [0.4, 1.5, 3.5], ids=["hard-stop", "one-done", "four-done"])
async def test_capped_run_then_larger_cap_equals_an_uncapped_run(tmp_path, share):
    ref = await generate(tmp_path / "ref", tokens=UNCAPPED)
    per_conversation = ref.total.tokens / len(TASKS)
    capped = await generate(tmp_path / "run", tokens=int(share * per_conversation))
    assert capped.stopped and capped.finished == int(share)
    assert capped.abandoned == (share < 1)
    convs = list(read_jsonl(tmp_path / "run/out/conversations.jsonl"))
    assert len(convs) == int(share)  # an abandoned conversation left no record
    manifest = json.loads((tmp_path / "run/out/manifest.json").read_text())
    assert manifest["stopped"] == "budget" and manifest["budget"]["tokens"] == int(
        share * per_conversation
    )
    assert manifest["spent"]["tokens"] == capped.total.tokens > 0
    rerun = await generate(tmp_path / "run", tokens=UNCAPPED)
    assert not rerun.stopped and rerun.total.tokens < ref.total.tokens  # the cache answered
    assert json.loads((tmp_path / "run/out/manifest.json").read_text())["stopped"] is None
    for name in ("conversations.jsonl", "turns.jsonl"):
        assert rows(tmp_path / "run", name) == rows(tmp_path / "ref", name)


@pytest.mark.parametrize(
    "command, records",
    [
        ("generate", "runs/scripted/generate/conversations.jsonl"),
        ("eval", "runs/scripted/eval/conversations.jsonl"),
        ("simulate", "runs/scripted/conversations.jsonl"),
    ],
)
def test_commands_stop_on_the_budget_with_status_3_and_a_rerun_finishes(
    workdir, capsys, command, records
):
    config = ["--config", "configs/scripted.yaml"]
    assert main([command, *config, "budget.requests=2"]) == 3
    out = capsys.readouterr().out
    assert "stopped on the budget: budget.requests=2 reached" in out and "Rerun to continue" in out
    manifest = json.loads((workdir / records).parent.joinpath("manifest.json").read_text())
    assert manifest["stopped"] == "budget" and manifest["spent"]["requests"] == 2
    assert not (workdir / records).exists() or not list(read_jsonl(workdir / records))
    assert main([command, *config, f"budget.tokens={UNCAPPED}"]) == 0
    written = list(read_jsonl(workdir / records))
    keys = [(r.get("system"), r.get("task_id"), r.get("seed")) for r in written]
    assert len(keys) == len(set(keys)) == (12 if command == "eval" else 3)


def test_a_money_cap_with_an_unpriced_role_is_bad_input(workdir, capsys):
    assert main(["generate", "--config", "configs/scripted.yaml", "budget.usd=5"]) == 2
    assert "has no price" in capsys.readouterr().out
