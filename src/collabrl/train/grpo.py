"""GRPO (or RLOO) with the multiturn-aware reward: group-relative policy optimisation on prefixes.

Each prompt is a conversation prefix from a ``collabrl generate`` run (the assistant's system
prompt, then the conversation up to a user message; the oldest messages are dropped when it does
not fit ``max_length - max_completion_length`` tokens). TRL samples ``candidates`` (k) replies
per prompt from the trained model; the reward of a reply is its MR in the full, untrimmed
conversation, with the live policy (the trainer's own model, wrapped by ``HFLocalBackend``)
playing the future assistant (``collabrl.train.live_reward``, as in every online recipe), its
samples seeded per step (``ReseedFutures``). The advantage of a reply is its MR relative to its
group's.

Completions cut by ``max_completion_length`` (no end-of-turn token): with ``cut_replies: masked``
(the default) TRL's ``mask_truncated_completions`` leaves them out of the loss, so the policy is
never pushed towards (or away from) a reply that merely ran out of room; they are still scored
and still count in their group's mean and spread (TRL's rule, as in DAPO). ``trained`` puts them
in the loss like finished ones (for a model that rarely ends by itself, e.g. the tiny test model).
TRL logs their share per step as ``completions/clipped_ratio``.

Unscored MR (every future failed or a judge stayed unreadable) is returned as ``None``. TRL 1.16
turns ``None`` into NaN, leaves NaN rows out of the group mean and standard deviation and sets
their advantage to 0, so an unscored reply carries no signal instead of looking like a bad one.

``grpo.loss_type`` is passed to ``GRPOConfig`` (grpo, dr_grpo, dapo, bnpo, ...); ``rloo`` uses
TRL's ``RLOOTrainer`` instead (same reward interface, leave-one-out baseline). With a LoRA
adapter and ``beta > 0``, TRL adds a frozen copy of the starting adapter named ``ref`` as the
reference; only the trained ``default`` adapter is written to ``output_dir/final``.
Generation inside the reward runs in eval mode without gradients (``HFLocalBackend`` switches the
model and restores its training mode), between TRL's own generation and its loss computation.

Budget (``collabrl.budget``; a trainer step is the unit): the roles MR calls (user, judge, the
live policy as future assistant: tokens and requests, money only with a price) are behind its
guard; TRL's own sampling of the replies is not a role call and is not counted. After each
step (``BudgetCallback``), when spent + spent per finished step would exceed a cap, training
stops and that step is checkpointed. A step in which a cap is reached is dropped whole, as a
round of online DPO or an update of PPO is: the reward function's ``BudgetExceeded`` comes before
the step's loss, so it ends training with nothing of that step applied, and the last finished
step is checkpointed as a save at its end would have written it (``keep_last_step``: its RNG
states put back), unless it already was. Either way ``run_info.json`` records
``stopped: "budget"``, the spend and ``last_checkpoint``, no ``final`` is written and
``BudgetStop`` is raised; a rerun with a larger cap resumes from that checkpoint. A capped
budget needs one process: each process would count only its own calls and stop on its own.

Under ``accelerate launch``/``torchrun`` it is one data-parallel run (``trainer_arguments``): each
process samples and scores its share of the prompts with its own copy of the live policy, the
gradients are averaged, and only rank 0 writes ``final`` and ``run_info.json``: its reply counts
are summed over the processes, its ``usage`` is rank 0's own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from collabrl.budget import Budget, BudgetExceeded
from collabrl.config import Config, ConfigError, TrainConfig
from collabrl.launcher import launched_processes
from collabrl.tracking import trainer_environment
from collabrl.train.checkpoint import rng_state, set_rng_state
from collabrl.train.common import (
    budget_stop,
    checkpoint_to_resume,
    load_policy,
    parallelism,
    parallelism_line,
    stop_on_non_finite_loss,
    trainer_arguments,
    write_run_info,
)
from collabrl.train.live_reward import LiveReward, live_policy_backend
from collabrl.train.lm_head import score_labelled_positions_only
from collabrl.train.prefixes import Prefix, load_prefixes, policy_prompt
from collabrl.train.progress import show_progress

RewardFunction = Callable[..., list[float | None]]


def train(config: Config) -> Path:
    """Train with GRPO (or RLOO) against MR; returns the folder of the final weights."""
    from datasets import Dataset
    from transformers import set_seed

    train_config = config.train
    budget = Budget(config.budget)
    _check_settings(config, budget)
    prefixes = load_prefixes(config, train_config.grpo.prefixes)
    checkpoint = checkpoint_to_resume(train_config)
    set_seed(train_config.seed)  # before the adapter's random init: equal configs, equal runs
    model, tokenizer = load_policy(train_config)
    tokenizer.padding_side = "left"  # TRL pads prompts on the left for generation
    rows = prompt_rows(config, prefixes, tokenizer)
    with LiveReward(config, live_policy_backend(config, model, tokenizer), budget) as live:
        reward = multiturn_reward_function(live, prefixes)
        with trainer_environment(
            config.tracking, train_config.output_dir
        ):  # TRL's log_dir and W&B project, scoped
            trainer = build_trainer(config, model, tokenizer, Dataset.from_list(rows), reward)
            steps = BudgetCallback(budget)
            trainer.add_callback(steps)
            trainer.add_callback(ReseedFutures(live))
            stop_on_non_finite_loss(trainer)
            spread = parallelism(trainer.args)
            if trainer.is_world_process_zero():
                print(parallelism_line("grpo", spread))
            with show_progress(trainer):
                try:
                    trainer.train(resume_from_checkpoint=checkpoint)
                except BudgetExceeded:  # inside a step, before its loss: the step is dropped
                    budget.abandoned += 1
                    keep_last_step(trainer, steps.rng)
        counts = summed_over_processes(
            trainer, {"scored_replies": live.scored, "unscored_replies": live.unscored}
        )
        usage = live.roles.meter.to_dict()
    facts = {
        "trainer": type(trainer).__name__,
        "prefixes": len(prefixes),
        "prompts": len(rows),
        "prompts_too_long": len(prefixes) - len(rows),
        "resumed_from": checkpoint,
        "steps": trainer.state.global_step,
        "usage": usage,
        "parallelism": spread,
        **counts,
        **budget.manifest(),
    }
    if budget.stopped:
        latest = train_config.output_dir / f"checkpoint-{trainer.state.global_step}"
        latest = latest if latest.is_dir() else None
        write_run_info(train_config, "grpo", **facts, last_checkpoint=latest and str(latest))
        raise budget_stop(budget, f"{budget.finished} steps", latest)
    return save_final(trainer, model, tokenizer, train_config, facts)


def _check_settings(config: Config, budget: Budget) -> None:
    if config.train.grpo.max_completion_length >= config.train.max_length:
        raise ConfigError("train.grpo.max_completion_length must be below train.max_length")
    if budget.capped and launched_processes() > 1:
        raise ConfigError(
            "a budget caps GRPO on one process only (each process would count "
            "its own calls): launch one process or drop the budget section"
        )


def prompt_rows(config: Config, prefixes: list[Prefix], tokenizer) -> list[dict[str, Any]]:
    """The dataset: each prefix's prompt (trimmed to leave room for a completion) and its index;
    a prefix whose last user message alone does not fit is left out."""
    room = config.train.max_length - config.train.grpo.max_completion_length
    system = config.assistant.system_prompt
    rows = [
        {"prompt": prompt, "prefix_index": i}
        for i, p in enumerate(prefixes)
        if (prompt := policy_prompt(p, system, tokenizer, room))
    ]
    if not rows:
        raise ConfigError(f"no prefix fits in {room} prompt tokens; raise train.max_length")
    return rows


def save_final(trainer, model, tokenizer, train_config: TrainConfig, facts: dict) -> Path:
    """``output_dir/final`` (only the trained ``default`` adapter, or the full model) and
    ``run_info.json``; rank 0 writes them, except a full model's save, which every process joins
    (ZeRO-3 gathers the shards there)."""
    from peft import PeftModel

    final = train_config.output_dir / "final"
    if not isinstance(model, PeftModel):
        trainer.save_model(str(final))
    if trainer.is_world_process_zero():  # the weights are the same on every process
        if isinstance(model, PeftModel):
            model.save_pretrained(str(final), selected_adapters=["default"])
        tokenizer.save_pretrained(str(final))
        write_run_info(train_config, "grpo", **facts)
    return final


def summed_over_processes(trainer, counts: dict[str, int]) -> dict[str, int]:
    """``counts`` added up over every process of the run (each scores only its own replies)."""
    import torch

    values = torch.tensor(list(counts.values()), device=trainer.args.device)
    return dict(zip(counts, trainer.accelerator.reduce(values, reduction="sum").tolist()))


class BudgetCallback(TrainerCallback):
    """Counts finished steps; ends training with a checkpoint after the step past which the
    budget allows no other (a cap reached, or the projection of one more step over a cap).
    ``rng``: the RNG states at the end of the last finished step (what its checkpoint holds)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.rng: dict | None = None

    def on_step_end(self, args, state, control, **kwargs):
        self.rng = rng_state()
        self.budget.finished += 1
        if not self.budget.may_start():
            control.should_training_stop = True
            control.should_save = True
        return control


def keep_last_step(trainer, rng: dict | None) -> None:
    """After a dropped step: ``checkpoint-<last finished step>`` as a save at that step's end
    would have written it (weights, optimizer and scheduler are untouched since; ``rng``, the RNG
    states of then, put back first), unless it exists or no step finished in this run."""
    folder = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
    if rng is None or folder.is_dir():
        return
    set_rng_state(rng)
    trainer._save_checkpoint(trainer.model, trial=None)  # the Trainer's own checkpoint writer


class ReseedFutures(TrainerCallback):
    """Seeds the live reward's future-assistant samples from ``(train.seed, step)`` as each step
    begins, as online DPO does per round and PPO per update: a resumed run scores a step's
    replies with the same draws as a straight one."""

    def __init__(self, live: LiveReward) -> None:
        self.live = live

    def on_step_begin(self, args, state, control, **kwargs):
        self.live.reseed(state.global_step)
        return control


def multiturn_reward_function(live: LiveReward, prefixes: list[Prefix]) -> RewardFunction:
    """A TRL reward function: the MR of each completion as the reply to its row's prefix.

    TRL passes the dataset's extra columns as keyword lists, one item per completion; the
    ``prefix_index`` column maps a completion back to its full prefix and task.
    """

    def multiturn_reward(
        prompts: list,
        completions: list,
        prefix_index: list[int],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        replies = [str(c[-1]["content"]).strip() for c in completions]  # conversational
        rewards = live.rewards([prefixes[i] for i in prefix_index], replies)  # BudgetExceeded
        if log_metric is not None:
            log_metric("mr/unscored_share", sum(r is None for r in rewards) / len(rewards))
        return rewards

    return multiturn_reward


def build_trainer(config: Config, model, tokenizer, dataset, reward: RewardFunction):
    """``GRPOTrainer`` with ``grpo.loss_type``, or ``RLOOTrainer`` when it is ``rloo``."""
    train_config, settings = config.train, config.train.grpo
    args = trainer_arguments(train_config, settings.learning_rate, settings.epochs)
    del args["max_length"]  # GRPO/RLOO configs have none: prompts are trimmed above instead
    args.update(
        num_generations=settings.candidates,
        beta=settings.beta,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        mask_truncated_completions=settings.cut_replies == "masked",
    )
    score_labelled_positions_only()
    if settings.loss_type == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOTrainer(
            model=model,
            reward_funcs=reward,
            args=RLOOConfig(**args),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    from trl import GRPOConfig, GRPOTrainer

    return GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=GRPOConfig(**args, loss_type=settings.loss_type),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
