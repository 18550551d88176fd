"""Online DPO and PPO send their per-round / per-update figures to TensorBoard; read back, they
are the figures the runs record in run_info.json and their checkpoints."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from collabrl.testing.online import online_config, write_generate_run
from collabrl.train import online_dpo, ppo
from collabrl.train.checkpoint import read_state


@pytest.fixture
def run(tmp_path):
    write_generate_run(tmp_path, conversations=3, turns=2)
    return tmp_path


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_online_dpo_logs_each_round(run, tiny_model):
    config = online_config(run, tiny_model)
    config.tracking.report_to = ["tensorboard"]
    online_dpo.train(config)
    rounds = json.loads((config.train.output_dir / "run_info.json").read_text())["rounds"]
    logged = scalars(config.train.output_dir / "runs")
    for name, key in [("mr/mean", "mean_mr"), ("loss", "mean_loss"), ("pairs", "pairs")]:
        assert logged[f"online_dpo/{name}"] == [
            (r["round"], pytest.approx(r[key], rel=1e-6)) for r in rounds
        ]
    assert logged["online_dpo/gap/mean"] == [
        (r["round"], pytest.approx(r["mean_mr_chosen"] - r["mean_mr_rejected"], rel=1e-5))
        for r in rounds
    ]
    assert [v for _, v in logged["online_dpo/unscored_rate"]] == [0.0, 0.0]
    for name in rounds[0]["metric_means"]:
        assert [s for s, _ in logged[f"online_dpo/metric/{name}/mean"]] == [1, 2]
    tokens = [v for _, v in logged["online_dpo/usage/tokens"]]
    assert 0 < tokens[0] < tokens[1]  # running totals


def test_ppo_logs_each_update(run, tiny_model):
    config = online_config(
        run,
        tiny_model,
        per_device_batch_size=2,
        ppo={"prefixes": str(run / "generate"), "rollouts": 4, "updates": 2, "epochs": 1},
    )
    config.tracking.report_to = ["tensorboard"]
    ppo.train(config)
    state = read_state(config.train.output_dir / "checkpoint-2").extra
    logged = scalars(config.train.output_dir / "runs")
    for name in ("reward_mean", "policy_loss", "value_loss", "kl"):
        assert logged[f"ppo/{name}"] == [
            (i + 1, pytest.approx(m[name], rel=1e-5, abs=1e-7))
            for i, m in enumerate(state["history"])
        ]
    assert [v for _, v in logged["ppo/unscored_rate"]] == [0.0, 0.0]
