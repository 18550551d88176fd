"""Online DPO: the policy answers fresh prefixes, MR picks the preferred reply, DPO updates, repeat.

The paper's recipe (CollabLLM, online DPO from the offline DPO adapter: lr 5e-6, batch 32, one
epoch): round r takes the next ``prefixes_per_round`` prefixes of the shuffled list (wrapping
around at its end), samples ``candidates`` (k) replies to each from the CURRENT weights (an
``HFLocalBackend`` over the live model, temperature > 0, seeded by round and prefix), scores every
reply with MR while the live policy also plays the future assistant (``collabrl.train.live_reward``,
its samples seeded by round), pairs the highest MR against
the lowest (``min_gap``; unscored replies never take part, see ``export.dpo_pair``), and runs one
epoch of DPO over that round's pairs. The next round samples from the updated weights.

Replies cut by ``max_completion_length`` (finish reason ``length``): a pair is rendered through
the chat template with the end-of-turn token after each reply, so a cut reply as the *chosen* one
would teach the policy to stop mid-sentence. ``cut_replies: rejected_only`` (the default, the
export's rule) marks them ``cut``: never chosen, only rejected (pushing down a reply that ran
out of room), and a prefix whose every reply was cut gives no pair and is not scored at all
(``every_reply_cut`` in the round's ``pair_filter``, its replies ``replies_skipped``: no MR
calls spent where no pair can come out). ``as_complete`` uses them like
finished replies (for a model that rarely ends by itself, e.g. the tiny test model). Each round
counts its ``cut_replies``.

``OnlineDPO`` is the recipe: it holds the policy, its tokenizer, the reference, the optimizer and
the live reward, and reads top to bottom: ``round`` = ``_sample``, score, ``_pair``, ``_update``.
The DPO step is a compact loop of our own rather than TRL's ``DPOTrainer``: a trainer per round
would rebuild its optimizer, scheduler and data pipeline every few dozen pairs, and exact
round-by-round resumption needs the optimizer and RNG state carried across rounds anyway.
The loss is the sigmoid DPO loss on summed reply log-probabilities; AdamW, constant learning
rate (the number of steps is only known round by round), gradients clipped at norm 1. It runs in
one process on one device: a launch with several processes (``torchrun``, ``accelerate launch``)
is refused before anything loads.

Reference model: the policy as it was when online DPO started, fixed for the whole run. With a
fresh LoRA adapter that is the base model (adapter disabled); with ``init_adapter`` (the offline
DPO adapter, as in the paper) a frozen copy of that adapter is loaded beside the trained one, so
the KL anchor is the offline DPO model and not the base; full fine-tuning keeps a frozen copy.

Checkpoints: ``output_dir/round-N`` after round N, in ``train.checkpoint``'s format: the weights
(adapter or model), the tokenizer, the optimizer and RNG states and the rounds done with their
statistics, written to a temporary folder and renamed, so a crash never leaves half a
checkpoint. A rerun resumes at round N + 1 and refuses a checkpoint with missing files. A NaN or
infinite loss or gradient stops the run before anything of that step is applied.

Budget (``collabrl.budget``; a round is the unit): the user, judge and live-policy roles are
behind its guard. A round does not start when spent + spent per finished round would exceed a
cap; a round in which a cap is reached (its model calls all come before its update) is dropped
whole. Either way ``round-N`` of the last finished round is the checkpoint, ``run_info.json``
records ``stopped: "budget"``, the spend and ``last_checkpoint``, no ``final`` is written, and
``BudgetStop`` is raised; a rerun with a larger cap resumes at round N + 1.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import set_seed
from trl.trainer.utils import selective_log_softmax, use_adapter

from collabrl.budget import Budget
from collabrl.config import Config, ConfigError, TrainConfig
from collabrl.export import dpo_pair
from collabrl.reward import CandidateReward
from collabrl.tracking import require_trackers
from collabrl.tracking_figures import online_dpo_figures
from collabrl.train.checkpoint import TrainingState, find_resumable, restore, save, save_weights
from collabrl.train.common import (
    NonFiniteLossError,
    budget_stop,
    budgeted,
    load_policy,
    refuse_multiple_processes,
    write_run_info,
)
from collabrl.train.live_reward import LiveReward, live_policy_backend
from collabrl.train.prefixes import Prefix, load_prefixes, policy_prompt, prompt_ids
from collabrl.train.progress import UnitReporter
from collabrl.types import Completion, GenerationParams, Message

CHECKPOINT_KIND = "round"  # round-<rounds done>
REFERENCE_ADAPTER = "reference"

Rows = list[tuple[list[int], int]]  # token ids, index of the first reply token


def train(config: Config) -> Path:
    """Run the remaining rounds of online DPO; returns the folder of the final weights."""
    refuse_multiple_processes("online-dpo")
    require_trackers(config.tracking)
    train_config, settings = config.train, config.train.online_dpo
    if settings.max_completion_length >= train_config.max_length:
        raise ConfigError("train.online_dpo.max_completion_length must be below train.max_length")
    prefixes = load_prefixes(config, settings.prefixes)
    checkpoint = find_resumable(train_config, CHECKPOINT_KIND)
    set_seed(train_config.seed)
    budget = Budget(config.budget)
    recipe = OnlineDPO.load(config, checkpoint, budget)
    history, latest = recipe.history, checkpoint
    reporter = UnitReporter(config, "online-dpo", "round", settings.rounds, len(history))
    with recipe.live, reporter:
        for index in range(len(history), settings.rounds):
            stats = budgeted(budget, recipe.round, index, prefixes)
            if stats is None:
                break
            history.append(stats)
            figures = online_dpo_figures(stats, recipe.live.roles.meter)
            means = {f"metric/{name}": v for name, v in stats["metric_means"].items()}
            shown = {k: v for k, v in stats.items() if k != "round"} | means
            reporter.log(index + 1, shown, figures, stats["pair_filter"])
            latest = recipe.save()
        usage = recipe.live.roles.meter.to_dict()
    facts = {
        "rounds": history,
        "prefixes": len(prefixes),
        "usage": usage,
        "reference": recipe.reference.description,
        "resumed_from": _name(checkpoint),
        **budget.manifest(),
    }
    if budget.stopped:
        write_run_info(train_config, "online_dpo", **facts, last_checkpoint=_name(latest))
        raise budget_stop(budget, f"{budget.finished} rounds", latest)
    final = train_config.output_dir / "final"
    save_weights(recipe.model, final, recipe.tokenizer)
    write_run_info(train_config, "online_dpo", **facts)
    return final


class OnlineDPO:
    """The recipe's state (policy, tokenizer, reference, optimizer, live reward, rounds done) and
    its steps: ``round`` samples, scores, pairs and updates."""

    def __init__(self, config: Config, model, tokenizer, live: LiveReward) -> None:
        self.config = config
        self.train_config = config.train
        self.settings = config.train.online_dpo
        self.model, self.tokenizer, self.live = model, tokenizer, live
        self.reference = ReferencePolicy(model, self.train_config)
        self.optimizer = torch.optim.AdamW(
            _trainable(model), lr=self.settings.learning_rate, weight_decay=0.0
        )
        self.history: list[dict] = []

    @classmethod
    def load(cls, config: Config, checkpoint: Path | None, budget: Budget) -> OnlineDPO:
        """The policy at the start of training, or as ``checkpoint`` saved it (weights, optimizer,
        rounds done), on the GPU if any; the live reward behind ``budget``."""
        model, tokenizer = _load_policy(config.train, checkpoint)
        live = LiveReward(config, live_policy_backend(config, model, tokenizer), budget)
        try:
            recipe = cls(config, model, tokenizer, live)
            if checkpoint is not None:
                recipe.history = restore(checkpoint, recipe.optimizer).extra["history"]
        except BaseException:
            live.close()
            raise
        return recipe

    def round(self, index: int, prefixes: list[Prefix]) -> dict:
        """One round: sample, score, pair, update. Returns the round's statistics."""
        room = self.train_config.max_length - self.settings.max_completion_length
        count = min(self.settings.prefixes_per_round, len(prefixes))
        chosen = [prefixes[(index * count + j) % len(prefixes)] for j in range(count)]
        system = self.config.assistant.system_prompt
        prompts = [(p, policy_prompt(p, system, self.tokenizer, room)) for p in chosen]
        prompts = [(p, prompt) for p, prompt in prompts if prompt is not None]
        self.live.reseed(index)
        samples = self.live.run(self._sample([prompt for _, prompt in prompts], index))
        marked = [self._cut_flags(group) for group in samples]
        # a prefix whose every reply is cut cannot give a pair: its replies are not scored
        pairable = [i for i, flags in enumerate(marked) if not all(flags)]
        replies = {i: [c.text.strip() for c in samples[i]] for i in pairable}
        scored = self.live.score([(prompts[i][0], replies[i]) for i in pairable])
        counts: Counter[str] = Counter({"every_reply_cut": len(prompts) - len(pairable)})
        pairs = [
            pair
            for i, rewards in zip(pairable, scored)
            if (pair := self._pair(*prompts[i], rewards, marked[i], counts))
        ]
        losses = self._update([self._encode_pair(pair) for pair in pairs], index)
        return {
            "round": index + 1,
            "prefixes": len(prompts),
            "prompts_too_long": len(chosen) - len(prompts),
            "replies": sum(len(group) for group in samples),
            "cut_replies": sum(c.cut for group in samples for c in group),
            "replies_skipped": sum(len(samples[i]) for i in range(len(prompts)) if all(marked[i])),
            **reward_stats(scored),
            **pair_stats(pairs, counts),
            "losses": losses,
            "mean_loss": _mean(losses),
        }

    async def _sample(self, prompts: list[list[dict]], index: int) -> list[list[Completion]]:
        """``candidates`` replies to each prompt from the live policy, seeded per round (with
        their finish reasons: a cut reply is marked by ``_cut_flags``)."""

        async def one(j: int, prompt: list[dict]) -> list[Completion]:
            params = GenerationParams(
                n=self.settings.candidates,
                temperature=self.settings.temperature,
                max_tokens=self.settings.max_completion_length,
                seed=random.Random(f"{self.train_config.seed}:{index}:{j}").getrandbits(48),
            )
            return await self.live.policy.generate([Message(**m) for m in prompt], params)

        return list(await asyncio.gather(*(one(j, p) for j, p in enumerate(prompts))))

    def _cut_flags(self, group: list[Completion]) -> list[bool]:
        """Which replies the pair must treat as cut (never chosen): those the length limit cut,
        unless ``cut_replies`` is ``as_complete``."""
        return [c.cut and self.settings.cut_replies == "rejected_only" for c in group]

    def _pair(
        self,
        prefix: Prefix,
        prompt: list[dict],
        rewards: list[CandidateReward],
        cut: list[bool],
        counts: Counter[str],
    ) -> dict[str, Any] | None:
        """Highest vs lowest MR among the scored replies, a ``cut`` one never the chosen (the
        export's rules and counts, ``min_gap`` of this recipe)."""
        turn = {
            "prefix": prompt,
            "conversation_id": prefix.conversation_id,
            "turn": prefix.turn,
            "candidates": [
                {"text": r.reply, "mr": r.mr, "cut": is_cut} for r, is_cut in zip(rewards, cut)
            ],
        }
        return dpo_pair(turn, self.settings.min_gap, counts)

    def _encode_pair(self, pair: dict) -> tuple[tuple[list[int], int], ...]:
        return tuple(
            _encode(
                self.tokenizer,
                pair["prompt"],
                pair[side][0]["content"],
                self.train_config.max_length,
            )
            for side in ("chosen", "rejected")
        )

    def _update(self, rows: list, index: int) -> list[float]:
        """One epoch of DPO over the round's pairs; returns the loss of each optimizer step."""
        order = list(range(len(rows)))
        random.Random(f"{self.train_config.seed}:{index}:order").shuffle(order)
        step = (
            self.train_config.per_device_batch_size * self.train_config.gradient_accumulation_steps
        )
        self.model.train()
        return [
            self._optimizer_step([rows[i] for i in order[start : start + step]], index)
            for start in range(0, len(order), step)
        ]

    def _optimizer_step(self, chunk: list, index: int) -> float:
        """Gradients of the DPO loss over ``chunk`` in micro-batches, clipped, then one step."""
        self.optimizer.zero_grad(set_to_none=True)
        micro_size, total = self.train_config.per_device_batch_size, 0.0
        for start in range(0, len(chunk), micro_size):
            micro = chunk[start : start + micro_size]
            rows = [c for c, _ in micro] + [r for _, r in micro]
            logps = sequence_logps(self.model, rows)
            with torch.no_grad():
                ref = self.reference.logps(rows)
            n = len(micro)
            loss = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], self.settings.beta)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss became {value} in round {index + 1}; stopped before "
                    f"applying it. The last round checkpoint is intact."
                )
            (loss * n / len(chunk)).backward()
            total += value * n / len(chunk)
        try:
            torch.nn.utils.clip_grad_norm_(_trainable(self.model), 1.0, error_if_nonfinite=True)
        except RuntimeError as error:
            raise NonFiniteLossError(f"non-finite gradient in round {index + 1}: {error}") from None
        self.optimizer.step()
        return total

    def save(self) -> Path:
        """``round-N`` for the N rounds done, in ``train.checkpoint``'s format."""
        done = len(self.history)
        state = TrainingState(done, done, {"history": self.history})
        return save(
            self.train_config.output_dir,
            CHECKPOINT_KIND,
            state,
            self.optimizer,
            lambda folder: save_weights(self.model, folder, self.tokenizer),
        )


def reward_stats(scored: list[list[CandidateReward]]) -> dict[str, Any]:
    """MR and per-metric means over the replies a round scored; unscored replies and futures
    counted."""
    rewards = [r for group in scored for r in group]
    values = [r.mr for r in rewards if r.mr is not None]
    metrics = sorted({name for r in rewards for name in r.metric_means})
    return {
        "unscored_replies": len(rewards) - len(values),
        "unscored_futures": sum(r.unscored for r in rewards),
        "mean_mr": _mean(values),
        "std_mr": statistics.pstdev(values) if values else None,
        "metric_means": {
            name: _mean([v for r in rewards if (v := r.metric_means.get(name)) is not None])
            for name in metrics
        },
    }


def pair_stats(pairs: list[dict], counts: Counter[str]) -> dict[str, Any]:
    """How many pairs a round formed, why the others were dropped, and their MR."""
    return {
        "pairs": len(pairs),
        "pair_filter": {"every_scored_candidate_cut": 0, **counts},  # every_reply_cut: not scored
        "mean_mr_chosen": _mean([p["mr_chosen"] for p in pairs]),
        "mean_mr_rejected": _mean([p["mr_rejected"] for p in pairs]),
    }


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


# --- the DPO loss and log-probabilities --------------------------------------------------------


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """The sigmoid DPO loss over summed log-probabilities of the replies (mean over pairs)."""
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def _encode(tokenizer, prompt: list[dict], reply: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + reply (the prompt keeps its end) and where the reply starts."""
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": reply}], tokenize=False
    )
    if not full.startswith(head):
        raise ValueError("the chat template renders a reply by changing the prompt before it")
    reply_ids = tokenizer(full[len(head) :], add_special_tokens=False)["input_ids"]
    reply_ids = reply_ids[: max_length - 1]
    ids = (prompt_ids(tokenizer, prompt) + reply_ids)[-max_length:]
    return ids, len(ids) - len(reply_ids)


def sequence_logps(model, rows: Rows) -> torch.Tensor:
    """Summed log-probabilities of each row's reply tokens (rows padded on the right)."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    reply = torch.zeros((len(rows), width - 1))
    for i, (ids, start) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
        reply[i, start - 1 : len(ids) - 1] = 1  # positions whose next token belongs to the reply
    input_ids, mask, reply = input_ids.to(device), mask.to(device), reply.to(device)
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
    logps = selective_log_softmax(logits, input_ids[:, 1:])  # without a vocabulary-wide copy
    return (logps * reply).sum(-1)


# --- models and the reference ----------------------------------------------------------------


class ReferencePolicy:
    """The policy as it was when online DPO started, fixed for the whole run (module docstring):
    a frozen copy for full fine-tuning, else the ``init_adapter`` loaded as a frozen second
    adapter, else the base model with the adapter disabled."""

    def __init__(self, model, train_config: TrainConfig) -> None:
        self.model, self.adapter, self.frozen = model, None, None
        init_adapter = train_config.online_dpo.init_adapter
        if not _is_adapter(model):
            self.frozen, _ = load_policy(train_config)
            self.frozen.to(_device()).eval().requires_grad_(False)
            self.description = "frozen copy of the starting model"
        elif init_adapter is not None:
            self.adapter = REFERENCE_ADAPTER
            model.load_adapter(str(init_adapter), adapter_name=self.adapter, is_trainable=False)
            self.description = f"frozen copy of init_adapter {init_adapter}"
        else:
            self.description = "base model (adapter disabled)"

    def logps(self, rows: Rows) -> torch.Tensor:
        """``sequence_logps`` under the reference (the policy's training mode is kept)."""
        if self.frozen is not None:
            return sequence_logps(self.frozen, rows)
        was_training = self.model.training
        self.model.eval()
        try:
            with use_adapter(self.model, self.adapter):
                return sequence_logps(self.model, rows)
        finally:
            self.model.train(was_training)


def _is_adapter(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _load_policy(train_config: TrainConfig, checkpoint: Path | None):
    """The policy at the start of training, or as ``checkpoint`` saved it, on the GPU if any."""
    if checkpoint is None:
        model, tokenizer = load_policy(train_config, train_config.online_dpo.init_adapter)
    elif (checkpoint / "adapter_config.json").exists():
        model, tokenizer = load_policy(train_config, init_adapter=checkpoint)
    else:
        model, tokenizer = load_policy(train_config.model_copy(update={"model": str(checkpoint)}))
    return model.to(_device()), tokenizer


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _name(path: Path | None) -> str | None:
    return None if path is None else str(path)
