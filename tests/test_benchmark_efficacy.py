"""The efficacy benchmark's wiring: its run is the demo config with its own sizes and folders,
its report reads the eval summary, and the reward it trains on prefers the question that gets
the detail. No model is loaded."""

import importlib.util
from pathlib import Path

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import load_config
from collabrl.evaluate import summarise
from collabrl.metrics.clarification import DetailSuccess, asks_question
from collabrl.metrics.turn_cost import TurnCost
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.rule_user import RuleUser
from collabrl.tasks.registry import load_task_set
from collabrl.types import Conversation, GenerationParams

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "efficacy_clarify", ROOT / "benchmarks" / "efficacy_clarify.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_run_is_the_demo_config_in_the_workdir(bench, tmp_path):
    args = bench.parse_args(["--quick", "--max-tokens", "24"])
    config = load_config(bench.BASE_CONFIG, bench.overrides(args, tmp_path))
    assert config.user.kind == "rule" and config.generate.max_turns == 1
    assert config.generate.tasks.limit == 24 and config.eval.tasks.limit == 22
    assert config.generate.tasks.split == "train" and config.eval.tasks.split == "test"
    assert config.roles["trained"].adapter == config.train.output_dir / "final"
    assert all(config.roles[r].generation.max_tokens == 24 for r in ("policy", "base", "trained"))
    for path in (
        config.cache.path,
        config.generate.output_dir,
        config.eval.output_dir,
        config.train.dpo.data,
        config.demo.report,
    ):
        assert tmp_path in Path(path).parents


def row(system, task, first_reply, score, turns, group=None):
    messages = [{"role": "user", "content": "..."}, {"role": "assistant", "content": first_reply}]
    return {
        "system": system,
        "task_id": task,
        "seed": 0,
        "metric": "detail_success",
        "score": score,
        "itr_grade": None,
        "assistant_tokens": 30,
        "turns": turns,
        "satisfied": bool(score),
        "error": None,
        "messages": messages,
        "group": group,
    }


def test_the_report_reads_success_asking_and_the_over_asking_check(bench):
    records = [row("base", f"t{i}", "Here you go.", 0.0, 3) for i in range(4)]
    records += [row("trained", f"t{i}", "Who is it for?", 1.0, 2) for i in range(4)]
    records += [
        row("base", "c0", "Dear Maya.", 1.0, 1, "complete requests"),
        row("trained", "c0", "Who?", 1.0, 2, "complete requests"),
    ]
    summary = summarise(records, ["base", "trained"], resamples=200)
    success = bench.figures(summary, bench.NEEDS_DETAIL, "score")
    assert success["base"] == 0.0 and success["trained"] == 1.0 and success["n"] == 4
    assert success["trained_minus_base"] == 1.0 and success["trained_ci95"] == [1.0, 1.0]
    asks = bench.figures(summary, bench.COMPLETE, "asks_first")
    assert asks["base"] == 0.0 and asks["trained"] == 1.0
    assert bench.figures(summary, bench.COMPLETE, "turns")["trained"] == 2.0


async def test_reward_prefers_the_question_that_gets_the_detail():
    task = load_task_set("clarify-chat", "train", limit=1)[0]
    keyword = task.metadata["detail_keywords"][0]

    def assistant(messages, params, index):  # uses the detail once the user has given it
        return (
            f"Happy birthday, {keyword}!" if keyword in messages[-1].content else "Happy birthday!"
        )

    policy = Assistant(ScriptedBackend(reply_fn=assistant), GenerationParams())
    reward = MultiturnReward(
        {
            "detail_success": WeightedMetric(DetailSuccess(), 1.0),
            "turn_cost": WeightedMetric(TurnCost(0.05), 1.0),
        },
        ForwardSampler(RuleUser(), policy, samples=2, window=1),
    )
    prefix = Conversation().append("user", task.metadata["opening"])
    ask, guess = await reward.score(task, prefix, ["Who is the friend?", "Happy birthday, friend!"])
    assert ask.mr == pytest.approx(1 - 2 * 0.05)
    assert guess.mr == pytest.approx(-2 * 0.05)
    assert asks_question(ask.reply) and not asks_question(guess.reply)
