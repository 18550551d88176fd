"""What every training recipe shares: loading the policy (with LoRA), seeds, resume checks,
stopping on a non-finite loss, and the TRL arguments built from ``TrainConfig``.

Recipes stay readable files that build their trainer directly; this module only holds the parts
that would otherwise be copied five times. Guarantees kept here:
- LoRA's r, alpha and dropout are the configured ones (the original code silently ran dropout 0);
- a checkpoint is resumed only when it holds everything exact resumption needs (model, optimizer,
  scheduler, RNG and trainer state); otherwise the recipe refuses with the missing files named;
- a NaN or infinite loss stops training at that step, before the optimizer applies it, so the
  last saved checkpoint stays the last good one (transformers' ``logging_nan_inf_filter`` only
  hides such losses from the logs);
- an online recipe stopped by its ``budget`` raises ``BudgetStop`` after recording the stop, with
  the one line ``collabrl train`` prints before exiting with ``EXIT_BUDGET``;
- under a multi-process launch (``torchrun``, ``accelerate launch``, ``mpirun``) the TRL recipes
  run as ONE data-parallel training whatever the dtype: gloo on CPUs, nccl on CUDA GPUs. Without
  ``use_cpu`` transformers gives a CPU-only machine no process group, so each process silently
  trained alone into the same folder. The recipes that run on one device refuse such a launch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from collabrl.budget import Budget, BudgetExceeded
from collabrl.config import Config, ConfigError, LoraSettings, TrainConfig
from collabrl.launcher import launched_processes
from collabrl.tracking import trainer_environment, trainer_tracking
from collabrl.train.checkpoint import WEIGHT_FILES, find_resumable, refuse_incomplete
from collabrl.train.checkpoint import CheckpointError as CheckpointError  # every recipe's error

T = TypeVar("T")
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
RNG_FILE_PREFIX = "rng_state"
TRL_CHECKPOINT_KIND = "checkpoint"  # TRL's folders are checkpoint-<global step>

# A ChatML template with {% generation %} markers, for tokenizers whose own template lacks them,
# so that TRL can compute the loss on assistant tokens only.
CHATML_WITH_GENERATION = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; nothing from that step was applied."""


class BudgetStop(RuntimeError):
    """The budget stopped an online recipe; its last complete checkpoint is intact and
    ``run_info.json`` says ``stopped: "budget"``. The message: why, the spend, how to go on."""


def budgeted(budget: Budget, work: Callable[..., T], *args: Any) -> T | None:
    """``work(*args)`` (one round or update), or None when the budget does not let it start (the
    projection rule, one unit more) or stops it midway (``BudgetExceeded``, raised before any
    model call, so before the update): the caller discards it. ``budget.stopped`` says why."""
    if not budget.may_start():
        return None
    try:
        result = work(*args)
    except BudgetExceeded:
        budget.abandoned += 1
        return None
    budget.finished += 1
    return result


def budget_stop(budget: Budget, done: str, checkpoint: Path | str | None) -> BudgetStop:
    """The ``BudgetStop`` of a recipe that finished ``done`` (e.g. "2 rounds") in this run."""
    then = (
        f"resume continues from {checkpoint}"
        if checkpoint
        else "no checkpoint was written yet, so a rerun starts over"
    )
    return BudgetStop(
        budget.stop_line(
            f"{done} finished in this run", f"Rerun with a larger budget to continue: {then}."
        )
    )


def torch_dtype(name: str):
    import torch

    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    cpu_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return torch.bfloat16 if cpu_bf16 else torch.float32


def lora_config(settings: LoraSettings, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type=task_type,
    )


def load_tokenizer(path: str, assistant_markers: bool = False):
    """The model's tokenizer, with its own chat template: the policy trains on prompts formatted
    as they are when it is served (hf_local and vLLM apply that template; SmolLM2's, for one,
    adds a default system line). Only SFT's assistant-only loss needs ``{% generation %}``
    markers (``assistant_markers``); then, or when there is no template, the template is
    ``training_chat_template``'s."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if assistant_markers or not tokenizer.chat_template:
        tokenizer.chat_template = training_chat_template(tokenizer)
    return tokenizer


def training_chat_template(tokenizer) -> str:
    """The chat template to train with, marking assistant replies with ``{% generation %}``:
    the model's own if it has the markers; TRL's patched copy of it for the families TRL knows
    (Llama 3, Qwen, Gemma, Phi, ...); ChatML for ChatML models TRL does not know (SmolLM2) and for
    tokenizers without a template. Any other template is kept as it is (DPO and GRPO need no
    markers; SFT then stops with TRL's message) rather than swapped for a format the model
    never saw."""
    template = tokenizer.chat_template or ""
    if isinstance(template, dict):  # named variants: "default" is the one used
        template = template.get("default", "")
    if "{% generation %}" in template or "{%- generation %}" in template:
        return template
    if template:
        from trl.chat_template_utils import get_training_chat_template

        try:
            return get_training_chat_template(tokenizer) or template
        except ValueError:  # a template TRL cannot patch
            pass
    if not template or "<|im_start|>" in template:
        return CHATML_WITH_GENERATION
    return template


def load_policy(
    train_config: TrainConfig, init_adapter: Path | None = None, assistant_markers: bool = False
):
    """(model, tokenizer): the base model with a fresh LoRA adapter, or ``init_adapter`` loaded
    as trainable, or the full model when ``train_config.lora`` is None; the tokenizer as
    ``load_tokenizer`` gives it."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from collabrl.models import resolve_model

    path = resolve_model(train_config.model)
    tokenizer = load_tokenizer(path, assistant_markers)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(train_config.dtype))
    if train_config.gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5's name for it
    if init_adapter is not None:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True), tokenizer
    if train_config.lora is not None:
        model = get_peft_model(model, lora_config(train_config.lora))
    return model, tokenizer


def refuse_multiple_processes(method: str) -> None:
    """Stop a recipe that runs on one device when it was launched as several processes, before it
    loads anything: each process would train its own copy into the same folder."""
    processes = launched_processes()
    if processes > 1:
        raise ConfigError(
            f"the {method} recipe runs on one device, but {processes} processes were launched: "
            f"run `collabrl train {method}` as one process, without torchrun or accelerate launch"
        )


def device_arguments(bf16: bool) -> dict[str, Any]:
    """``use_cpu`` and ``ddp_backend`` for the TRL config: one distributed training over all
    launched processes (gloo on CPUs, nccl on CUDA GPUs), and bf16 on a CPU (AVX512-BF16/AMX),
    which transformers refuses without a bf16 GPU unless told to train on the CPU."""
    import torch
    from accelerate.utils import parse_flag_from_env
    from transformers.utils import is_torch_bf16_gpu_available

    several = launched_processes() > 1
    on_cpu = (
        (bf16 and not is_torch_bf16_gpu_available())
        or (several and not torch.cuda.is_available())
        or parse_flag_from_env("ACCELERATE_USE_CPU")
    )  # accelerate launch --cpu
    backend = None
    if several:
        backend = "gloo" if on_cpu else "nccl" if torch.cuda.is_available() else None
    return {"use_cpu": on_cpu, "ddp_backend": backend}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parallelism(args) -> dict[str, Any]:
    """How a TRL trainer's work is spread: processes, backend, device and effective batch."""
    device = args.device.type  # reading it sets up ``args.distributed_state``
    state = args.distributed_state
    return {
        "world_size": args.world_size,
        "backend": state.backend,
        "distributed_type": state.distributed_type.value,
        "device": device,
        "effective_batch": (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        ),
    }


def parallelism_line(method: str, facts: dict[str, Any]) -> str:
    """The console line that says whether this is one run over several processes."""
    deepspeed = ", DeepSpeed" if facts["distributed_type"] == "DEEPSPEED" else ""
    if facts["world_size"] == 1:
        return (
            f"{method}: one process on {facts['device']}{deepspeed}, "
            f"batch {facts['effective_batch']}"
        )
    return (
        f"{method}: one data-parallel run over world size {facts['world_size']} "
        f"({facts['backend']} on {facts['device']}{deepspeed}), effective batch "
        f"{facts['effective_batch']}; rank 0 writes the outputs"
    )


def trainer_arguments(
    train_config: TrainConfig, learning_rate: float, epochs: float
) -> dict[str, Any]:
    """Keyword arguments shared by every TRL config class (SFTConfig, DPOConfig, GRPOConfig)."""
    bf16 = str(torch_dtype(train_config.dtype)) == "torch.bfloat16"
    return {
        "output_dir": str(train_config.output_dir),
        "learning_rate": learning_rate,
        "num_train_epochs": epochs,
        "max_steps": train_config.max_steps,
        "per_device_train_batch_size": train_config.per_device_batch_size,
        "gradient_accumulation_steps": train_config.gradient_accumulation_steps,
        "seed": train_config.seed,
        "data_seed": train_config.seed,
        "bf16": bf16,
        **device_arguments(bf16),
        "dataloader_pin_memory": _cuda_available(),  # pinned memory only speeds copies to a GPU
        "logging_steps": train_config.logging_steps,
        "save_steps": train_config.save_steps,
        "save_strategy": "steps",
        **trainer_tracking(train_config.tracking),
        "activation_checkpointing": train_config.gradient_checkpointing,
        "max_length": train_config.max_length,
    }


def checkpoint_to_resume(train_config: TrainConfig) -> str | None:
    """The last TRL checkpoint in ``output_dir`` when resuming is on (``find_resumable``, with
    TRL's files checked); refuses incomplete ones. A str: what TRL and run_info.json take."""
    last = find_resumable(train_config, TRL_CHECKPOINT_KIND, verify_folder=verify_checkpoint)
    return None if last is None else str(last)


def verify_checkpoint(folder: Path, required: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError unless TRL's checkpoint ``folder`` (with the ``required`` files)
    can be resumed exactly."""
    missing = [name for name in (*CHECKPOINT_FILES, *required) if not (folder / name).exists()]
    if not any(p.name.startswith(RNG_FILE_PREFIX) for p in folder.iterdir()):
        missing.append(f"{RNG_FILE_PREFIX}*.pth")
    if not any((folder / w).exists() for w in WEIGHT_FILES):
        missing.append("model weights")
    needs = "the model, optimizer, scheduler, RNG and trainer state"
    refuse_incomplete(folder, missing, needs)


def stop_on_non_finite_loss(trainer) -> None:
    """Make ``trainer`` raise NonFiniteLossError at the first NaN/inf loss, before the optimizer
    step, so no update from it is applied and no checkpoint is written after it."""
    original = trainer.training_step

    def training_step(*args, **kwargs):
        loss = original(*args, **kwargs)
        value = float(loss.detach().float().mean())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss became {value} at step {trainer.state.global_step + 1}; training stopped "
                f"before applying it. The last checkpoint in {trainer.args.output_dir} is intact."
            )
        return loss

    trainer.training_step = training_step


def read_rows(folder: Path, name: str) -> list[dict[str, Any]]:
    """Rows of ``<folder>/<name>.jsonl`` (an export output); a clear error if it is missing."""
    from collabrl.records import read_jsonl

    path = folder / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run `collabrl export` first (export.output_dir)"
        )
    return list(read_jsonl(path))


def write_run_info(train_config: TrainConfig, method: str, **facts: Any) -> None:
    """``run_info.json`` next to the checkpoints: what was trained, how, and data facts."""
    train_config.output_dir.mkdir(parents=True, exist_ok=True)
    info = {"method": method, "config": train_config.model_dump(mode="json"), **facts}
    (train_config.output_dir / "run_info.json").write_text(json.dumps(info, indent=2))


def run_trl_recipe(
    config: Config,
    build_trainer: Callable[[TrainConfig], tuple[Any, list]],
    fit: Callable[[Any, TrainConfig, list, str | None], Path],
) -> Path:
    """A TRL recipe's run (SFT, DPO): a broken checkpoint is refused before anything loads, then
    the trainer is built and fitted inside ``trainer_environment`` (TRL's log_dir and W&B project
    and folder, scoped)."""
    train_config = config.train
    resume = checkpoint_to_resume(train_config)
    with trainer_environment(config.tracking, train_config.output_dir):
        trainer, reports = build_trainer(train_config)
        return fit(trainer, train_config, reports, resume)


def fit_trainer(
    trainer, train_config: TrainConfig, reports: list, resume: str | None, method: str
) -> Path:
    """Train a TRL trainer (resuming from ``resume`` if given), save ``output_dir/final``, and
    record the run; data reports are printed and written by the main process only."""
    main = trainer.is_world_process_zero()
    facts: dict[str, Any] = {
        "data": {r.name: r.as_dict() for r in reports},
        "resumed_from": resume,
        "parallelism": parallelism(trainer.args),
    }
    if main:
        print(parallelism_line(method, facts["parallelism"]))
        for report in reports:
            print(report.summary())
        write_run_info(train_config, method, **facts)
    from collabrl.train.progress import show_progress

    with show_progress(trainer):
        result = trainer.train(resume_from_checkpoint=resume)
    final = train_config.output_dir / "final"
    trainer.save_model(str(final))  # every process: ZeRO-3 gathers the shards here
    if main:
        write_run_info(
            train_config,
            method,
            **facts,
            final=str(final),
            global_step=trainer.state.global_step,
            metrics=result.metrics,
        )
    return final


def eval_arguments(train_config: TrainConfig, has_eval_rows: bool) -> dict[str, Any]:
    """TRL arguments for evaluating every ``save_steps`` when there is an eval split."""
    if not has_eval_rows:
        return {}
    return {
        "eval_strategy": "steps",
        "eval_steps": train_config.save_steps,
        "per_device_eval_batch_size": train_config.per_device_batch_size,
    }
