"""Two CPU processes under ``accelerate launch`` are ONE data-parallel training (gloo), fp32.

The bug this guards against: with fp32 on a CPU-only machine transformers set up no process
group, so ``accelerate launch --num_processes 2`` ran two independent trainings into the same
output folder. Each launch here runs the real ``collabrl train`` command in two processes on the
tiny model, started as on a GPU machine (``--multi_gpu``: torch's launcher; accelerate's
``--cpu`` starts several processes only through mpirun) with CUDA hidden; this file is also the script they run (``__main__`` below): it wraps the recipe's
``fit`` to record, per rank, the world size, a hash of every batch it trained on, a hash of the
trainable weights after every step, who wrote ``run_info.json``, and its final weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collabrl.testing.tiny_model import save_tiny_chat_model
from collabrl.testing.train_data import write_export

STEPS = 2  # 8 rows, 2 per device, 2 processes: one epoch


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(method: str, tmp_path: Path, model: Path, export: Path) -> tuple[str, list[dict]]:
    """Run ``collabrl train <method>`` in two CPU processes; (console output, rank records)."""
    output, dumps = tmp_path / f"{method}-run", tmp_path / f"{method}-ranks"
    dumps.mkdir()
    overrides = [
        f"train.model={model}",
        f"train.output_dir={output}",
        "train.dtype=float32",
        "train.per_device_batch_size=2",
        "train.gradient_accumulation_steps=1",
        f"train.max_steps={STEPS}",
        f"train.save_steps={STEPS}",
        "train.logging_steps=1",
        "train.max_length=256",
        "train.lora.r=8",
        "train.sft.learning_rate=1e-3",
        "train.dpo.learning_rate=1e-3",
        "train.dpo.max_prompt_length=192",
        f"train.sft.data={export}",
        f"train.dpo.data={export}",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
    }
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(_free_port()),
        __file__,
        method,
        str(dumps),
        *overrides,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    console = done.stdout + done.stderr
    written = sorted(p.name for p in dumps.iterdir())
    assert done.returncode == 0, (
        f"rank records {written}; "
        + "\n".join(
            line
            for line in console.splitlines()
            if any(word in line for word in ("rror", "terminate", "rank  ", "exitcode"))
        )[-6000:]
    )
    records = sorted(
        (json.loads(p.read_text()) for p in dumps.glob("rank*.json")), key=lambda r: r["rank"]
    )
    return console, records


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model and an export folder on disk: the launched processes load them."""
    folder = tmp_path_factory.mktemp("multiprocess")
    return save_tiny_chat_model(folder / "model"), write_export(folder / "export")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_two_processes_are_one_data_parallel_run(method, files, tmp_path):
    from safetensors.torch import load_file

    console, records = _launch(method, tmp_path, *files)
    assert [r["rank"] for r in records] == [0, 1]
    first, second = records
    for record in records:  # both ranks in one process group of 2, not two runs of 1
        assert record["world_size"] == record["process_group_size"] == 2
        assert record["backend"] == "gloo"
        assert len(record["batches"]) == len(record["weights"]) == STEPS
    assert not set(first["batches"]) & set(second["batches"])  # each rank has its own shard
    assert first["weights"] == second["weights"]  # different data, same weights: synchronised
    assert first["initial"] == second["initial"] != first["weights"][0]  # and they moved
    # only rank 0 wrote the manifest (at the start and the end) and printed
    assert (first["run_info_writes"], second["run_info_writes"]) == (2, 0)
    assert console.count(f"{method}: one data-parallel run over world size 2 (gloo") == 1
    assert console.count(f"{method}: model saved to") == 1
    assert console.count(f"{method}_train: ") == 1  # the data report
    output = tmp_path / f"{method}-run"
    info = json.loads((output / "run_info.json").read_text())
    assert info["global_step"] == STEPS and info["parallelism"]["world_size"] == 2
    assert sorted(p.name for p in output.glob("checkpoint-*")) == [f"checkpoint-{STEPS}"]
    saved = load_file(str(output / "final" / "adapter_model.safetensors"))
    assert (
        hashlib.sha256(b"".join(saved[n].numpy().tobytes() for n in sorted(saved))).hexdigest()
        == first["final"]
        == second["final"]
    )


# ---- what each launched process runs -------------------------------------------------------


def _digest(tensors) -> str:
    hasher = hashlib.sha256()
    for tensor in tensors:
        hasher.update(tensor.detach().float().cpu().numpy().tobytes())
    return hasher.hexdigest()


def _trainable(model) -> list:
    """The trainable tensors in the order and under the names the saved adapter uses."""
    named = {n.replace(".default", ""): p for n, p in model.named_parameters() if p.requires_grad}
    return [named[n] for n in sorted(named)]


def _run_rank(method: str, dumps: Path, overrides: list[str]) -> int:
    import torch
    from transformers import TrainerCallback

    from collabrl.cli import main
    from collabrl.train import common, dpo, sft

    recipe = {"sft": sft, "dpo": dpo}[method]
    rank = int(os.environ["RANK"])
    record: dict = {"rank": rank, "batches": [], "weights": [], "run_info_writes": 0}
    fit, write_run_info = recipe.fit, common.write_run_info

    class Weights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            record["initial"] = _digest(_trainable(model))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            record["weights"].append(_digest(_trainable(model)))

    def recording_fit(trainer, *args):
        record["world_size"] = trainer.args.world_size
        record["process_group_size"] = torch.distributed.get_world_size()
        record["backend"] = torch.distributed.get_backend()
        step = trainer.training_step

        def training_step(model, inputs, *rest, **kwargs):
            tensors = [inputs[k] for k in sorted(inputs) if isinstance(inputs[k], torch.Tensor)]
            record["batches"].append(_digest(tensors))
            return step(model, inputs, *rest, **kwargs)

        trainer.training_step = training_step
        trainer.add_callback(Weights())
        final = fit(trainer, *args)
        record["final"] = _digest(_trainable(trainer.model))
        return final

    def counting_write(*args, **kwargs):
        record["run_info_writes"] += 1
        return write_run_info(*args, **kwargs)

    recipe.fit, common.write_run_info = recording_fit, counting_write
    code = main(["train", method, *overrides])
    (dumps / f"rank{rank}.json").write_text(json.dumps(record))
    return code


if __name__ == "__main__":
    sys.exit(_run_rank(sys.argv[1], Path(sys.argv[2]), sys.argv[3:]))
