"""What reaches the console and what goes to the run's ``collabrl.log``: library warnings and log
records and the trainer's dictionaries go to the file; collabrl's own records stay on the console."""

from __future__ import annotations

import io
import json
import logging
import warnings
from types import SimpleNamespace

import pytest
from rich.console import Console

from collabrl.cli.effect_table import effect_tables
from collabrl.console_log import LOG_NAME, log_file


@pytest.fixture
def console_handler():
    """A root handler like ``logging.basicConfig``'s, writing to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_library_output_goes_to_the_file_ours_to_both(tmp_path, console_handler):
    with log_file(tmp_path / "run", "generate") as path:
        warnings.warn("old_argument is deprecated", FutureWarning, stacklevel=1)
        logging.getLogger("transformers.trainer").warning("library says hi")
        logging.getLogger("collabrl.engine").warning("our own warning")
        logging.getLogger("collabrl.train").info('step 1: {"loss": 0.5}')
    assert path == tmp_path / "run" / LOG_NAME
    written = path.read_text()
    for line in (
        "---- collabrl generate ----",
        "old_argument is deprecated",
        "library says hi",
        "our own warning",
        "step 1",
    ):
        assert line in written, line
    shown = console_handler.getvalue()
    assert "our own warning" in shown
    assert "library says hi" not in shown and "deprecated" not in shown and "step 1" not in shown


def test_everything_is_restored_after_the_block(tmp_path, console_handler):
    root, ours = logging.getLogger(), logging.getLogger("collabrl")
    before = (list(root.handlers), ours.level)
    with log_file(tmp_path / "run", "eval"):
        pass
    assert not (tmp_path / "run").exists()  # nothing logged (e.g. refused input): no file
    assert (list(root.handlers), ours.level) == before
    logging.getLogger("transformers").warning("after the run")
    assert "after the run" in console_handler.getvalue()


def test_a_rerun_appends_to_the_log(tmp_path):
    for command in ("eval", "eval"):
        with log_file(tmp_path, command):
            logging.getLogger("peft").warning(f"from {command}")
    assert (tmp_path / LOG_NAME).read_text().count("---- collabrl eval ----") == 2


@pytest.mark.parametrize("rank_variable", ["RANK", "OMPI_COMM_WORLD_RANK"])
def test_each_process_of_a_multi_process_launch_writes_its_own_file(
    tmp_path, monkeypatch, rank_variable
):
    monkeypatch.setenv("WORLD_SIZE", "3")
    for rank in (0, 2, 1):
        monkeypatch.setenv(rank_variable, str(rank))
        with log_file(tmp_path, "train grpo") as path:
            logging.getLogger("transformers").warning(f"said by rank {rank}")
        assert path.name == ("collabrl.log" if rank == 0 else f"collabrl.rank{rank}.log")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["collabrl.log", "collabrl.rank1.log", "collabrl.rank2.log"]
    for rank, name in enumerate(["collabrl.log", "collabrl.rank1.log", "collabrl.rank2.log"]):
        lines = (tmp_path / name).read_text().splitlines()
        assert [line for line in lines if "said by rank" in line][0].endswith(f"rank {rank}")
        assert sum("said by rank" in line for line in lines) == 1


def estimate(mean: float, low: float, high: float) -> dict:
    return {"mean": mean, "low": low, "high": high, "n": 8}


def test_effect_tables_render_every_figure_of_the_summary():
    """A figure the table code has never heard of (``brand_new``) is shown like the others."""

    def figures(score: dict, new: dict) -> dict:
        return {
            "conversations": 8,
            "failed": 0,
            "score": score,
            "score_unscored": 0,
            "brand_new": new,
            "brand_new_unscored": 0,
            "turns": None,
            "turns_unscored": 8,
        }

    summary = {
        "accuracy": {
            "systems": {
                "base": figures(estimate(12.5, 0, 37.5), estimate(1.25, 1.0, 1.5)),
                "trained": figures(estimate(62.5, 25, 87.5), estimate(2.5, 2.0, 3.0)),
            },
            "paired": [
                {
                    "figure": "score",
                    "a": "trained",
                    "b": "base",
                    **estimate(50, 12.5, 75),
                    "within_noise": False,
                },
                {
                    "figure": "brand_new",
                    "a": "trained",
                    "b": "base",
                    **estimate(1.25, -0.5, 2.0),
                    "within_noise": True,
                },
            ],
        }
    }
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(effect_tables(summary))
    text = out.getvalue()
    assert "Accuracy (%): trained - base = +50.0 [+12.5, +75.0] (interval above 0)" in text
    assert "Turns" not in text  # no system has a value: no column of dashes
    for shown in (
        "brand new",
        "62.5",
        "[25.0, 87.5]",
        "2.50",
        "[2.00, 3.00]",
        "+1.25",
        "[-0.50, +2.00]",
        "Paired differences vs base",
    ):
        assert shown in text, shown


def test_trainer_steps_show_as_progress_and_dicts_go_to_the_log(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    from collabrl.train.progress import StepProgress, show_progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    steps = StepProgress(console, heartbeat=None)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    caplog.set_level(logging.INFO, logger="collabrl.train")
    steps.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step = step
        steps.on_step_end(None, state, None)
        steps.on_log(None, state, None, logs={"loss": 0.5 / step, "epoch": step / 4})
    steps.on_train_end(None, state, None)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("train: 4/4 steps, ") and last.endswith("elapsed, done, loss 0.125")
    assert "{'loss'" not in out.getvalue()
    assert [json.loads(r.getMessage().split(": ", 1)[1])["loss"] for r in caplog.records] == [
        0.5,
        0.25,
        0.5 / 3,
        0.125,
    ]

    callbacks = transformers.trainer_callback
    trainer = SimpleNamespace(added=[], removed=[])
    trainer.add_callback, trainer.remove_callback = trainer.added.append, trainer.removed.append
    with show_progress(trainer, console):
        pass
    assert trainer.removed == [callbacks.PrinterCallback, callbacks.ProgressCallback]
    assert [type(c) for c in trainer.added] == [StepProgress]


def test_commands_in_a_log_show_progress_lines_and_keep_library_output_off(workdir, capsys):
    from collabrl.cli import main

    for command, line in (
        ("generate", "generate: 3/3 conversations, "),
        ("eval", "eval: 12/12 conversations, "),
    ):
        assert main([command, "--config", "configs/scripted.yaml"]) == 0
        out = capsys.readouterr().out
        assert line in out and "elapsed, done" in out, out
    assert main(["report", "runs/scripted/eval", "-o", "r.html"]) == 0
    assert "report: 1/1 run folders, " in capsys.readouterr().out
