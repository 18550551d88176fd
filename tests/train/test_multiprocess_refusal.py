"""What a multi-process launch gets: the TRL recipes one distributed run's device arguments for
every dtype, the one-device recipes (online DPO, PPO) a one-line refusal before loading anything.
The two-process run itself is launched in test_multiprocess.py."""

from __future__ import annotations

import pytest
import torch

from collabrl.cli import main
from collabrl.launcher import launched_processes
from collabrl.train import online_dpo, ppo
from collabrl.train.common import device_arguments, parallelism_line

LAUNCHER_VARIABLES = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
    "ACCELERATE_USE_CPU",
)


@pytest.fixture
def launcher(monkeypatch):
    """Set environment variables as a launcher would; none are set to begin with."""
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def launch(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return launch


def _gpus(monkeypatch, cuda: bool) -> None:
    import transformers.utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(transformers.utils, "is_torch_bf16_gpu_available", lambda: cuda)


@pytest.mark.parametrize("variable", ["WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])
def test_launched_processes_reads_torchrun_and_mpi(launcher, variable):
    assert launched_processes() == 1
    launcher(**{variable: "4"})
    assert launched_processes() == 4


@pytest.mark.parametrize("bf16", [False, True])
def test_several_cpu_processes_are_one_gloo_run_for_every_dtype(launcher, monkeypatch, bf16):
    _gpus(monkeypatch, cuda=False)
    launcher(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    assert device_arguments(bf16) == {"use_cpu": True, "ddp_backend": "gloo"}


@pytest.mark.parametrize("bf16", [False, True])
def test_several_gpu_processes_use_nccl(launcher, monkeypatch, bf16):
    _gpus(monkeypatch, cuda=True)
    launcher(WORLD_SIZE="8", RANK="3", LOCAL_RANK="3")
    assert device_arguments(bf16) == {"use_cpu": False, "ddp_backend": "nccl"}


def test_one_process_keeps_the_default_device(launcher, monkeypatch):
    _gpus(monkeypatch, cuda=False)
    assert device_arguments(False) == {"use_cpu": False, "ddp_backend": None}  # MPS stays usable
    assert device_arguments(True) == {"use_cpu": True, "ddp_backend": None}  # bf16 on a CPU
    launcher(ACCELERATE_USE_CPU="true")  # accelerate launch --cpu, even on a GPU machine
    _gpus(monkeypatch, cuda=True)
    assert device_arguments(False) == {"use_cpu": True, "ddp_backend": None}


def _must_not_load(*args, **kwargs):
    raise AssertionError("the recipe loaded something before refusing the launch")


@pytest.mark.parametrize(("method", "module"), [("online-dpo", online_dpo), ("ppo", ppo)])
def test_one_device_recipes_refuse_a_multi_process_launch(
    method, module, launcher, monkeypatch, tmp_path, capsys
):
    for name in ("load_prefixes", "load_policy"):
        monkeypatch.setattr(module, name, _must_not_load)
    launcher(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1")
    code = main(["train", method, f"train.output_dir={tmp_path / 'run'}"])
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"the {method} recipe runs on one device, but 2 processes were launched" in lines[0]
    assert "without torchrun or accelerate launch" in lines[0]
    assert not (tmp_path / "run" / "run_info.json").exists()


def test_the_first_line_says_how_the_run_is_spread():
    one = {
        "world_size": 1,
        "backend": None,
        "distributed_type": "NO",
        "device": "cuda",
        "effective_batch": 64,
    }
    assert parallelism_line("sft", one) == "sft: one process on cuda, batch 64"
    zero = {
        "world_size": 8,
        "backend": "nccl",
        "distributed_type": "DEEPSPEED",
        "device": "cuda",
        "effective_batch": 64,
    }
    assert parallelism_line("dpo", zero) == (
        "dpo: one data-parallel run over world size 8 (nccl on cuda, DeepSpeed), effective batch "
        "64; rank 0 writes the outputs"
    )
