"""Prefixes for the online recipes: loading, deterministic shuffling, trimming, personas."""

from __future__ import annotations

import json

import pytest

from collabrl.config import ConfigError
from collabrl.testing.online import online_config
from collabrl.testing.tiny_model import tiny_tokenizer
from collabrl.train.prefixes import load_prefixes, policy_prompt, prompt_tokens


def config_for(run, **train):
    return online_config(run, run / "no-model", **train)


def test_load_prefixes_attaches_tasks_and_shuffles_with_the_seed(prefix_run):
    config = config_for(prefix_run)
    prefixes = load_prefixes(config, prefix_run / "generate")
    assert len(prefixes) == 12
    assert all(p.conversation.last.role == "user" for p in prefixes)
    assert all(p.task.id == p.conversation_id for p in prefixes)
    assert prefixes[0].conversation == next(
        q.conversation
        for q in load_prefixes(config, prefix_run / "generate")
        if q.key == prefixes[0].key
    )
    assert [p.key for p in load_prefixes(config, prefix_run / "generate")] == [
        p.key for p in prefixes
    ]
    other = load_prefixes(config_for(prefix_run, seed=1), prefix_run / "generate")
    assert [p.key for p in other] != [p.key for p in prefixes]
    assert sorted(p.key for p in other) == sorted(p.key for p in prefixes)


def test_a_prefix_of_an_unknown_task_is_an_error(prefix_run):
    turns = prefix_run / "generate" / "turns.jsonl"
    record = json.loads(turns.read_text().splitlines()[0])
    turns.write_text(turns.read_text() + json.dumps({**record, "task_id": "elsewhere"}) + "\n")
    with pytest.raises(ConfigError, match="elsewhere"):
        load_prefixes(config_for(prefix_run), prefix_run / "generate")


def test_missing_run_folder_is_a_clear_error(tmp_path, prefix_run):
    with pytest.raises(FileNotFoundError, match="collabrl generate"):
        load_prefixes(config_for(prefix_run), tmp_path / "nothing")


def test_policy_prompt_drops_the_oldest_turns_and_starts_with_a_user(prefix_run):
    tokenizer = tiny_tokenizer()
    prefix = max(
        load_prefixes(config_for(prefix_run), prefix_run / "generate"), key=lambda p: p.turn
    )
    full = policy_prompt(prefix, "Be brief.", tokenizer, budget=10_000)
    assert full[0] == {"role": "system", "content": "Be brief."}
    assert full[1:] == prefix.conversation.to_openai()
    budget = prompt_tokens(tokenizer, full) - 1
    trimmed = policy_prompt(prefix, "Be brief.", tokenizer, budget)
    assert trimmed[0]["role"] == "system" and trimmed[1]["role"] == "user"
    assert trimmed[-1] == full[-1] and len(trimmed) < len(full)
    assert prompt_tokens(tokenizer, trimmed) <= budget
    assert policy_prompt(prefix, None, tokenizer, budget=3) is None


def test_prefixes_play_the_persona_their_generate_conversation_had(prefix_run):
    from collabrl.assembly import build_personas
    from collabrl.personas import persona_of

    config = config_for(prefix_run).model_copy(deep=True)
    assert all(persona_of(p.task) is None for p in load_prefixes(config, prefix_run / "generate"))
    config.user.personas = "default"
    personas = build_personas(config)
    for prefix in load_prefixes(config, prefix_run / "generate"):
        assert persona_of(prefix.task) == personas.pick(prefix.task.id, 0).record()
