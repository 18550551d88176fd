"""The live reward: MR with the policy being trained as the future assistant, for every online
recipe (online DPO, GRPO/RLOO, PPO)."""

from __future__ import annotations

import pytest

from collabrl.backends.openai_compat import OpenAICompatBackend
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import Config, OpenAIBackendConfig
from collabrl.metrics.efficiency import approx_token_count
from collabrl.testing.fake_openai import FakeOpenAIServer
from collabrl.testing.online import online_config
from collabrl.train.live_reward import (
    FUTURES_STREAM,
    LiveReward,
    derived_seed,
    with_live_policy_role,
)
from collabrl.train.prefixes import load_prefixes


def config_for(run, **train):
    return online_config(run, run / "no-model", **train)


def test_the_future_assistant_role_is_added_when_the_config_lacks_it(prefix_run):
    config = config_for(prefix_run)
    bare = config.model_copy(
        update={"roles": {k: v for k, v in config.roles.items() if k != "policy"}}
    )
    added = with_live_policy_role(bare).roles["policy"]
    assert added.kind == "hf_local" and added.model == config.train.model
    assert with_live_policy_role(config) is config


def test_live_reward_gives_mr_per_reply_and_none_when_unscored(prefix_run):
    data = config_for(prefix_run).model_dump(mode="json")
    # the judge cannot read a grade when the transcript holds "UNREADABLE"; max_reasks is 0
    data["roles"]["judge"]["rules"] = [{"contains": "UNREADABLE", "reply": "I will not grade."}]
    config = Config.model_validate(data)
    policy = ScriptedBackend(reply_fn=lambda messages, params, i: "ok")
    prefixes = load_prefixes(config, prefix_run / "generate")
    replies = ["short", "UNREADABLE", "a much longer reply with many more words in it", "x"]
    with LiveReward(config, policy) as live:
        rewards = live.rewards([prefixes[0], prefixes[0], prefixes[1], prefixes[1]], replies)
        assert live.scored == 3 and live.unscored == 1
        assert live.roles.meter.roles["policy"].calls == 8  # 4 replies x 2 futures, uncached
    assert rewards[1] is None
    assert all(isinstance(r, float) for r in rewards[:1] + rewards[2:])
    # interactivity 1, minus 0.02 per assistant token: the prefix's, the reply's, the future's "ok"
    for prefix, reply, reward in [
        (prefixes[0], replies[0], rewards[0]),
        (prefixes[1], replies[2], rewards[2]),
    ]:
        tokens = sum(approx_token_count(m.content) for m in prefix.conversation.turns("assistant"))
        assert reward == pytest.approx(1 - 0.02 * (tokens + approx_token_count(reply) + 1))
    assert len(policy.calls) == 8


def test_reseed_gives_each_unit_of_training_its_own_future_seed(prefix_run):
    config = config_for(prefix_run)
    policy = ScriptedBackend(reply_fn=lambda messages, params, i: "ok")
    with LiveReward(config, policy) as live:
        seeds = []
        for unit in (0, 1, 0):
            live.reseed(unit)
            seeds.append(live.reward.sampler.assistant.params.seed)
    assert seeds[0] == seeds[2] == derived_seed(config.train.seed, 0, FUTURES_STREAM)
    assert seeds[1] == derived_seed(config.train.seed, 1, FUTURES_STREAM) != seeds[0]


def test_the_live_policy_can_be_a_served_model(prefix_run, monkeypatch):
    # another trainer serves its current weights over an OpenAI-compatible API (vLLM, SGLang):
    # the futures' assistant turns go there, never to the cache
    monkeypatch.setenv("SERVED_POLICY_KEY", "k")
    data = config_for(prefix_run).model_dump(mode="json")
    data["cache"] = {"mode": "readwrite", "path": str(prefix_run / "cache.sqlite")}
    config = Config.model_validate(data)  # the user and judge are cached; the live policy never
    prefixes = load_prefixes(config, prefix_run / "generate")
    with FakeOpenAIServer() as server:
        served = OpenAICompatBackend(
            OpenAIBackendConfig(
                kind="openai",
                model="current-policy",
                base_url=server.base_url,
                api_key_env="SERVED_POLICY_KEY",
            )
        )
        with LiveReward(config, served) as live:
            rewards = live.rewards(prefixes[:2], ["What is it for?", "Here it is."])
            again = live.rewards(prefixes[:2], ["What is it for?", "Here it is."])
        asked = server.request_count
    assert all(isinstance(r, float) for r in rewards + again)
    assert asked == 2 * 2 * config.reward.samples  # 2 replies x 2 calls x S futures, uncached
