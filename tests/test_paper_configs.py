"""Paper mode: configs/paper-{math,code,doc}.yaml hold the original CollabLLM settings."""

import shlex
from pathlib import Path

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.cli import build_parser
from collabrl.config import load_config
from collabrl.metrics.registry import build_metric
from collabrl.types import Conversation, Task

ROOT = Path(__file__).resolve().parents[1]
# task set, task metric, lambda of the token cost, export min_gap, assistant turns
PAPER = {
    "math": ("math-hard", "accuracy", 5e-4, 0.05, 6),
    "code": ("bigcodebench", "pass_rate", 5e-4, 0.02, 6),
    "doc": ("medium-doc", "bleu_char", 1e-4, 0.02, 8),
}


def _config(name):
    return load_config(ROOT / "configs" / f"paper-{name}.yaml")


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_has_the_original_settings(name):
    task_set, metric, lam, gap, turns = PAPER[name]
    c = _config(name)
    assert (c.reward.samples, c.reward.window) == (3, 2)
    assert (c.generate.candidates, c.generate.proactive_share) == (2, 0.5)
    assert c.generate.tasks.set == task_set and c.generate.tasks.limit == 500
    assert c.eval.tasks.set == task_set and c.eval.tasks.split == "test"
    assert c.generate.max_turns == c.eval.max_turns == turns
    assert c.export.min_gap == c.train.online_dpo.min_gap == gap
    metrics = {m.name: m for m in c.reward.metrics}
    assert set(metrics) == {metric, "interactivity", "token_efficiency"}
    assert metrics["interactivity"].options == {"scale": "thirds"}
    cost = metrics["token_efficiency"]
    assert cost.options == {"form": "kilotokens"} and cost.weight == pytest.approx(-lam * 1000)
    assert [m.name for m in c.eval.task_metrics] == [metric]
    assert c.roles["policy"].model == c.train.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert c.roles["user"].model == c.roles["judge"].model == "gpt-4o-mini"
    t = c.train
    assert (t.lora.r, t.lora.alpha, t.lora.dropout) == (32, 16, 0.1)
    assert t.per_device_batch_size * t.gradient_accumulation_steps == 64
    assert (t.sft.learning_rate, t.sft.epochs) == (1e-5, 3)
    assert (t.dpo.learning_rate, t.dpo.epochs, t.dpo.beta) == (5e-6, 8, 0.1)
    assert (t.online_dpo.learning_rate, t.online_dpo.candidates) == (5e-6, 2)
    assert (t.ppo.learning_rate, t.ppo.epochs, t.ppo.rollouts) == (2e-6, 5, 64)
    systems = [s.name for s in c.eval.systems]
    assert systems == ["base", "proactive", "sft", "ppo", "offline_dpo", "online_dpo"]
    assert all(s.role in c.roles for s in c.eval.systems)


@pytest.mark.parametrize("name", PAPER)
async def test_paper_reward_weights_give_the_originals_unclamped_values(name):
    """Built as a run builds them: a thousand-token-heavy future costs -lam x tokens, past -1,
    and a judge grade 2 adds 2/3, as in the original code."""
    _, _, lam, _, _ = PAPER[name]
    specs = {m.name: m for m in _config(name).reward.metrics}

    def build(metric):
        spec = specs[metric]
        return build_metric(
            metric,
            spec.options,
            extractor_for=lambda role: None,
            backends=lambda role: ScriptedBackend(["GRADE $call_id: 2"]),
        )

    task = Task(id="t", description="d", intent="i")
    long_future = Conversation.of(("user", "go"), ("assistant", "word " * 12000))
    cost = await build("token_efficiency")(long_future, task)
    assert specs["token_efficiency"].weight * cost.value == pytest.approx(-lam * 12000)
    if lam * 12000 > 1:
        assert specs["token_efficiency"].weight * cost.value < -1  # no clamp
    grade = await build("interactivity")(long_future, task)
    assert grade.value == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", PAPER)
def test_every_stage_command_in_the_header_parses(name):
    """The header's commands name real subcommands, options and config keys."""
    path = ROOT / "configs" / f"paper-{name}.yaml"
    header = [
        line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")
    ]
    commands = [part.strip() for line in header for part in line.split("&&") if "collabrl " in part]
    commands = [c[c.index("collabrl ") :] for c in commands]
    stages = {shlex.split(c)[1] for c in commands}
    assert {"generate", "export", "train", "merge", "eval", "report"} <= stages
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        overrides = getattr(args, "overrides", None) or []
        if getattr(args, "config", None):
            load_config(ROOT / args.config, overrides)
