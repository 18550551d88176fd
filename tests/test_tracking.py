"""Experiment tracking: generate and eval write TensorBoard events whose values are the ones the
records give; a missing tracker package is one error line before any work; the W&B / Trackio
adapter drives its module's init/log/finish; the TRL trainers get the same settings."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from collections import defaultdict
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from collabrl.cli import main
from collabrl.config import ConfigError, TrackingConfig, load_config
from collabrl.evaluate import FIGURES
from collabrl.records import read_jsonl
from collabrl.tracking import (
    Tracker,
    open_tracker,
    trainer_environment,
    trainer_tracking,
    trainer_variables,
)
from collabrl.tracking_figures import Running

SCRIPTED = ["--config", "configs/scripted.yaml"]
TENSORBOARD = "tracking.report_to=[tensorboard]"


def events(folder) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def series(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def last(accumulator: EventAccumulator, tag: str) -> float:
    return accumulator.Scalars(tag)[-1].value


def test_generate_logs_running_figures_equal_to_the_records(workdir):
    assert main(["generate", *SCRIPTED, TENSORBOARD]) == 0
    out = workdir / "runs/scripted/generate"
    tb = events(out / "runs")
    turns = list(read_jsonl(out / "turns.jsonl"))
    conversations = list(read_jsonl(out / "conversations.jsonl"))
    mrs = [c["mr"] for t in turns for c in t["candidates"] if c["mr"] is not None]
    gaps = [
        max(s) - min(s)
        for t in turns
        if len(s := [c["mr"] for c in t["candidates"] if c["mr"] is not None]) >= 2
    ]
    assert [step for step, _ in series(tb, "generate/mr/mean")] == [1, 2, 3]
    assert last(tb, "generate/mr/mean") == pytest.approx(statistics.fmean(mrs), rel=1e-6)
    assert last(tb, "generate/mr/std") == pytest.approx(statistics.pstdev(mrs), rel=1e-5)
    assert last(tb, "generate/gap/mean") == pytest.approx(statistics.fmean(gaps), rel=1e-6)
    per_metric = defaultdict(list)
    for turn in turns:
        for candidate in turn["candidates"]:
            for name, value in candidate["metric_means"].items():
                if value is not None:
                    per_metric[name].append(value)
    assert per_metric
    for name, values in per_metric.items():
        assert last(tb, f"generate/metric/{name}/mean") == pytest.approx(
            statistics.fmean(values), rel=1e-6
        )
    failed = sum(c["status"] == "failed" for c in conversations)
    assert last(tb, "generate/failure_rate") == failed / len(conversations)
    assert last(tb, "generate/cut/candidate_rate") == 0.0
    tokens = series(tb, "generate/usage/tokens")
    assert tokens[-1][1] > 0 and [v for _, v in tokens] == sorted(v for _, v in tokens)


def test_eval_logs_each_system_as_it_goes_and_the_summary_at_the_end(workdir):
    assert main(["eval", *SCRIPTED, TENSORBOARD]) == 0
    out = workdir / "runs/scripted/eval"
    tb = events(out / "runs")
    records = list(read_jsonl(out / "conversations.jsonl"))
    summary = json.loads((out / "summary.json").read_text())
    systems = {r["system"] for r in records}
    assert len(systems) == 2
    steps = sorted(step for s in systems for step, _ in series(tb, f"eval/{s}/failure_rate"))
    assert steps == list(range(1, len(records) + 1))  # one point per finished conversation
    for system in systems:
        ok = [r for r in records if r["system"] == system and not r["error"]]
        for name, get in FIGURES.items():
            values = [v for v in map(get, ok) if v is not None]
            if values:
                assert last(tb, f"eval/{system}/{name}") == pytest.approx(
                    statistics.fmean(values), rel=1e-5, abs=1e-6
                )
    for group, block in summary.items():
        for system, figures in block["systems"].items():
            assert last(tb, f"eval/summary/{group}/{system}/score") == pytest.approx(
                figures["score"]["mean"], rel=1e-5, abs=1e-6
            )
    [table] = tb.Tensors("eval/table")
    assert table.step == len(records)
    logged = table.tensor_proto.string_val[0].decode()
    assert logged.strip() == (out / "table.md").read_text().strip()


def test_a_resumed_generate_continues_its_steps(workdir, user_without_key):
    out = workdir / "runs/scripted/generate"
    assert main(["generate", *SCRIPTED, TENSORBOARD, "generate.tasks.limit=1"]) == 0
    assert main(["generate", "--config", user_without_key, TENSORBOARD]) == 1  # 2 fail
    assert main(["generate", *SCRIPTED, TENSORBOARD]) == 0  # retries the 2 failed ones
    tb = events(out / "runs")
    records = list(read_jsonl(out / "conversations.jsonl"))
    assert [r["status"] for r in records] == ["ok", "failed", "failed", "ok", "ok"]
    # one point per conversation record, in order: no step of a rerun overlaps an earlier one
    assert [step for step, _ in series(tb, "generate/failure_rate")] == [1, 2, 3, 4, 5]
    # running figures are each run's own: the second run failed both, the third none
    assert [value for _, value in series(tb, "generate/failure_rate")] == [0, 1, 1, 0, 0]


def test_a_resumed_eval_continues_its_steps_and_logs_the_summary_after_them(workdir):
    out = workdir / "runs/scripted/eval"
    assert main(["eval", *SCRIPTED, TENSORBOARD, "eval.tasks.limit=1"]) == 0
    first = len(list(read_jsonl(out / "conversations.jsonl")))
    assert main(["eval", *SCRIPTED, TENSORBOARD]) == 0
    total = len(list(read_jsonl(out / "conversations.jsonl")))
    assert 0 < first < total
    tb = events(out / "runs")
    systems = {tag.split("/")[1] for tag in tb.Tags()["scalars"] if tag.endswith("failure_rate")}
    steps = sorted(step for s in systems for step, _ in series(tb, f"eval/{s}/failure_rate"))
    assert steps == list(range(1, total + 1))
    summary_steps = {step for step, _ in series(tb, "eval/summary/bleu/base/score")}
    assert summary_steps == {first, total}
    assert [t.step for t in tb.Tensors("eval/table")] == [first, total]


def test_without_a_tracking_section_nothing_is_tracked(workdir):
    assert main(["generate", *SCRIPTED]) == 0
    assert not (workdir / "runs/scripted/generate/runs").exists()


@pytest.mark.parametrize(
    "tracker, command",
    [
        ("wandb", "pip install 'collabrl[wandb]'"),
        ("trackio", "pip install 'collabrl[trackio]'"),
        ("tensorboard", "pip install tensorboard"),
    ],
)
@pytest.mark.parametrize("stage", ["generate", "eval"])
def test_a_missing_tracker_package_is_one_error_line_before_any_work(
    workdir, capsys, monkeypatch, tracker, command, stage
):
    monkeypatch.setitem(sys.modules, tracker, None)  # import fails as if not installed
    assert main([stage, *SCRIPTED, f"tracking.report_to=[{tracker}]"]) == 2
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("error:")]
    assert f"tracking.report_to: {tracker} needs the {tracker} package" in line
    assert command in line
    assert not (workdir / f"runs/scripted/{stage}/conversations.jsonl").exists()


class FakeRunModule(SimpleNamespace):
    """Stands in for ``wandb`` / ``trackio``: records every call."""

    def __init__(self) -> None:
        super().__init__(calls=[])
        self.Table = lambda columns, data: ("table", tuple(columns), tuple(map(tuple, data)))

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))

    def log(self, values, step):
        self.calls.append(("log", values, step))

    def finish(self):
        self.calls.append(("finish",))


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_the_run_adapter_drives_init_log_and_finish(tmp_path, monkeypatch, tracker):
    module = FakeRunModule()
    monkeypatch.setitem(sys.modules, tracker, module)
    settings = TrackingConfig(report_to=[tracker], project="proj", run_name="run-1")
    with open_tracker(settings, tmp_path / "out", {"seed": 3}, "generate") as tracking:
        tracking.scalars({"a/b": 1, "skipped": None, "nan": math.nan}, step=2)
        tracking.text("eval/table", "| x |")
    init = {"project": "proj", "name": "run-1", "config": {"seed": 3}}
    if tracker == "wandb":
        init["dir"] = str(tmp_path / "out")
    assert module.calls == [
        ("init", init),
        ("log", {"a/b": 1.0}, 2),
        ("log", {"eval/table": ("table", ("text",), (("| x |",),))}, 2),
        ("finish",),
    ]


def test_tensorboard_keeps_the_wall_time_and_leaves_out_unscored_values(tmp_path):
    settings = TrackingConfig(report_to=["tensorboard"], log_dir=tmp_path / "tb")
    with open_tracker(settings, tmp_path / "unused", {}) as tracking:
        tracking.scalars({"x": 2.5, "unscored": None, "inf": math.inf}, step=4)
    tb = events(tmp_path / "tb")
    assert tb.Tags()["scalars"] == ["x"]
    [point] = tb.Scalars("x")
    assert (point.step, point.value) == (4, 2.5) and point.wall_time > 1e9
    assert not (tmp_path / "unused").exists()


def test_no_tracker_does_nothing():
    tracking = Tracker([])
    tracking.scalars({"x": 1.0}, step=1)
    tracking.text("t", "text")
    tracking.close()
    assert tracking.step == 1


def test_the_train_recipes_get_the_same_settings():
    config = load_config(
        None, ["tracking.report_to=[tensorboard]", "tracking.run_name=r1", "tracking.project=p"]
    )
    assert trainer_tracking(config.train.tracking) == {
        "report_to": ["tensorboard"],
        "run_name": "r1",
        "project": "p",
    }
    assert trainer_tracking(load_config(None).train.tracking)["report_to"] == "none"


def test_the_trainer_environment_holds_log_dir_and_project_only_while_training(
    monkeypatch, tmp_path
):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_PROJECT", "someone-elses")
    settings = TrackingConfig(report_to=["tensorboard", "wandb"], log_dir="tb/sft", project="p")
    output = tmp_path / "run"
    with pytest.raises(RuntimeError), trainer_environment(settings, output):
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == "tb/sft"
        assert os.environ["WANDB_PROJECT"] == "p"
        assert os.environ["WANDB_DIR"] == str(output) and output.is_dir()  # W&B's files there
        raise RuntimeError("training failed")
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ and "WANDB_DIR" not in os.environ
    assert os.environ["WANDB_PROJECT"] == "someone-elses"
    # without log_dir transformers keeps its own folder; without wandb its project is not set
    assert trainer_variables(TrackingConfig(report_to=["tensorboard"]), output) == {}


def test_a_missing_package_stops_the_train_recipes_too(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"wandb needs the wandb package.*collabrl\[wandb\]"):
        trainer_tracking(TrackingConfig(report_to=["wandb"]))


def test_a_tracker_named_twice_is_bad_input():
    with pytest.raises(ConfigError, match="tracking.report_to"):
        load_config(None, ["tracking.report_to=[wandb, wandb]"])


def test_running_figures_match_the_batch_ones():
    values = [0.3, 1.7, 0.9, 0.9, 2.4]
    running = Running()
    for v in values:
        running.add(v)
    assert running.mean == pytest.approx(statistics.fmean(values))
    assert running.std == pytest.approx(statistics.pstdev(values))
    assert Running().mean is None and Running().std is None
