"""Online DPO: the policy answers fresh prefixes, MR picks the preferred reply, DPO updates, repeat.

The paper's recipe (CollabLLM, online DPO from the offline DPO adapter: lr 5e-6, batch 32, one
epoch): round r takes the next ``prefixes_per_round`` prefixes of the shuffled list (wrapping
around at its end), samples ``samples_per_prefix`` replies to each from the CURRENT weights (an
``HFLocalBackend`` over the live model, temperature > 0, seeded by round and prefix), scores every
reply with MR while the live policy also plays the future assistant, pairs the highest MR against
the lowest (``min_gap``; unscored replies never take part, see ``export.dpo_pair``), and runs one
epoch of DPO over that round's pairs. The next round samples from the updated weights.

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
statistics, written to a temporary folder and renamed, so a crash never leaves half a checkpoint. A rerun resumes at round N + 1 and refuses a checkpoint with missing files. A NaN or
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
from collections.abc import Callable
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
from collabrl.tracking import open_tracker, require_trackers
from collabrl.tracking_figures import online_dpo_figures
from collabrl.train.checkpoint import (
    TrainingState,
    find_resumable,
    restore,
    save,
    save_weights,
)
from collabrl.train.common import (
    NonFiniteLossError,
    budget_stop,
    budgeted,
    load_policy,
    refuse_multiple_processes,
    write_run_info,
)
from collabrl.train.prefixes import (
    MRScorer,
    Prefix,
    live_policy_backend,
    load_prefixes,
    policy_prompt,
)
from collabrl.types import GenerationParams, Message

CHECKPOINT_KIND = "round"  # round-<rounds done>
REFERENCE_ADAPTER = "reference"

Rows = list[tuple[list[int], int]]  # token ids, index of the first reply token


def train(config: Config) -> Path:
    """Run the remaining rounds of online DPO; returns the folder of the final weights."""
    refuse_multiple_processes("online-dpo")
    require_trackers(config.tracking)
    tc, settings = config.train, config.train.online_dpo
    if settings.max_completion_length >= tc.max_length:
        raise ConfigError("train.online_dpo.max_completion_length must be below train.max_length")
    prefixes = load_prefixes(config, settings.prefixes)
    checkpoint = find_resumable(tc, CHECKPOINT_KIND)
    set_seed(tc.seed)
    model, tokenizer = _load_policy(tc, checkpoint)
    reference = _reference(model, tc)
    optimizer = torch.optim.AdamW(_trainable(model), lr=settings.learning_rate, weight_decay=0.0)
    history = [] if checkpoint is None else restore(checkpoint, optimizer).extra["history"]
    budget, latest = Budget(config.budget), checkpoint
    with (
        MRScorer(config, live_policy_backend(config, model, tokenizer), budget) as scorer,
        open_tracker(
            config.tracking, tc.output_dir, config.model_dump(mode="json"), "online-dpo"
        ) as tracker,
    ):
        for index in range(len(history), settings.rounds):
            stats = budgeted(
                budget,
                _round,
                index,
                prefixes,
                config,
                model,
                tokenizer,
                reference,
                optimizer,
                scorer,
            )
            if stats is None:
                break
            history.append(stats)
            tracker.scalars(online_dpo_figures(stats, scorer.roles.meter), index + 1)
            latest = _save_round(tc.output_dir, model, tokenizer, optimizer, history)
        usage = scorer.roles.meter.to_dict()
    facts = {
        "rounds": history,
        "prefixes": len(prefixes),
        "usage": usage,
        "reference": _reference_name(model, tc),
        "resumed_from": _name(checkpoint),
        **budget.manifest(),
    }
    if budget.stopped:
        write_run_info(tc, "online_dpo", **facts, last_checkpoint=_name(latest))
        raise budget_stop(budget, f"{budget.finished} rounds", latest)
    final = tc.output_dir / "final"
    save_weights(model, final, tokenizer)
    write_run_info(tc, "online_dpo", **facts)
    return final


def _round(
    index: int,
    prefixes: list[Prefix],
    config: Config,
    model,
    tokenizer,
    reference: Callable[[Rows], torch.Tensor],
    optimizer,
    scorer: MRScorer,
) -> dict:
    """One round: sample, score, pair, update. Returns the round's statistics."""
    tc, settings = config.train, config.train.online_dpo
    budget = tc.max_length - settings.max_completion_length
    count = min(settings.prefixes_per_round, len(prefixes))
    chosen = [prefixes[(index * count + j) % len(prefixes)] for j in range(count)]
    prompts = [
        (p, policy_prompt(p, config.assistant.system_prompt, tokenizer, budget)) for p in chosen
    ]
    prompts = [(p, prompt) for p, prompt in prompts if prompt is not None]
    replies = scorer.run(
        _sample(scorer, [prompt for _, prompt in prompts], settings, tc.seed, index)
    )
    scored = scorer.score([(p, r) for (p, _), r in zip(prompts, replies)])
    counts: Counter[str] = Counter()
    pairs = [
        pair
        for (p, prompt), rewards in zip(prompts, scored)
        if (pair := _pair(p, prompt, rewards, settings.min_gap, counts))
    ]
    rows = [_encode_pair(tokenizer, pair, tc.max_length) for pair in pairs]
    losses = _update(model, reference, optimizer, rows, tc, settings.beta, index)
    return _round_stats(index, len(chosen) - len(prompts), scored, pairs, counts, losses)


async def _sample(
    scorer: MRScorer, prompts: list[list[dict]], settings, seed: int, index: int
) -> list[list[str]]:
    """``samples_per_prefix`` replies to each prompt from the live policy, seeded per round."""

    async def one(j: int, prompt: list[dict]) -> list[str]:
        params = GenerationParams(
            n=settings.samples_per_prefix,
            temperature=settings.temperature,
            max_tokens=settings.max_completion_length,
            seed=random.Random(f"{seed}:{index}:{j}").getrandbits(48),
        )
        completions = await scorer.policy.generate([Message(**m) for m in prompt], params)
        return [c.text.strip() for c in completions]

    return list(await asyncio.gather(*(one(j, p) for j, p in enumerate(prompts))))


def _pair(
    prefix: Prefix,
    prompt: list[dict],
    rewards: list[CandidateReward],
    min_gap: float,
    counts: Counter[str],
) -> dict[str, Any] | None:
    """Highest vs lowest MR among the scored replies (the export's rules and counts)."""
    turn = {
        "prefix": prompt,
        "conversation_id": prefix.conversation_id,
        "turn": prefix.turn,
        "candidates": [{"text": r.reply, "mr": r.mr} for r in rewards],
    }
    return dpo_pair(turn, min_gap, counts)


def _round_stats(
    index: int,
    too_long: int,
    scored: list[list[CandidateReward]],
    pairs: list[dict],
    counts: Counter[str],
    losses: list[float],
) -> dict:
    rewards = [r for group in scored for r in group]
    values = [r.mr for r in rewards if r.mr is not None]

    def mean(xs: list[float]) -> float | None:
        return statistics.fmean(xs) if xs else None

    metrics = sorted({name for r in rewards for name in r.metric_means})
    return {
        "round": index + 1,
        "prefixes": len(scored),
        "prompts_too_long": too_long,
        "replies": len(rewards),
        "unscored_replies": len(rewards) - len(values),
        "unscored_futures": sum(r.unscored for r in rewards),
        "mean_mr": mean(values),
        "std_mr": statistics.pstdev(values) if values else None,
        "metric_means": {
            name: mean([v for r in rewards if (v := r.metric_means.get(name)) is not None])
            for name in metrics
        },
        "pairs": len(pairs),
        "pair_filter": dict(counts),
        "mean_mr_chosen": mean([p["mr_chosen"] for p in pairs]),
        "mean_mr_rejected": mean([p["mr_rejected"] for p in pairs]),
        "losses": losses,
        "mean_loss": mean(losses),
    }


# --- the DPO update ----------------------------------------------------------------------------


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


def _encode_pair(tokenizer, pair: dict, max_length: int) -> tuple[tuple[list[int], int], ...]:
    return tuple(
        _encode(tokenizer, pair["prompt"], pair[side][0]["content"], max_length)
        for side in ("chosen", "rejected")
    )


def _encode(tokenizer, prompt: list[dict], reply: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + reply (the prompt keeps its end) and where the reply starts."""
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": reply}], tokenize=False
    )
    if not full.startswith(head):
        raise ValueError("the chat template renders a reply by changing the prompt before it")
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full[len(head) :], add_special_tokens=False)["input_ids"][
        : max_length - 1
    ]
    ids = (prompt_ids + reply_ids)[-max_length:]
    return ids, len(ids) - len(reply_ids)


def _update(
    model, reference, optimizer, rows: list, tc: TrainConfig, beta: float, index: int
) -> list[float]:
    """One epoch of DPO over the round's pairs; returns the loss of each optimizer step."""
    order = list(range(len(rows)))
    random.Random(f"{tc.seed}:{index}:order").shuffle(order)
    step = tc.per_device_batch_size * tc.gradient_accumulation_steps
    model.train()
    losses = []
    for start in range(0, len(order), step):
        chunk = [rows[i] for i in order[start : start + step]]
        losses.append(_optimizer_step(model, reference, optimizer, chunk, tc, beta, index))
    return losses


def _optimizer_step(
    model, reference, optimizer, chunk: list, tc: TrainConfig, beta: float, index: int
) -> float:
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for start in range(0, len(chunk), tc.per_device_batch_size):
        micro = chunk[start : start + tc.per_device_batch_size]
        rows = [c for c, _ in micro] + [r for _, r in micro]
        logps = _sequence_logps(model, rows)
        with torch.no_grad():
            ref = reference(rows)
        n = len(micro)
        loss = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss became {value} in round {index + 1}; stopped before "
                f"applying it. The last round checkpoint is intact."
            )
        (loss * n / len(chunk)).backward()
        total += value * n / len(chunk)
    try:
        torch.nn.utils.clip_grad_norm_(_trainable(model), 1.0, error_if_nonfinite=True)
    except RuntimeError as error:
        raise NonFiniteLossError(f"non-finite gradient in round {index + 1}: {error}") from None
    optimizer.step()
    return total


def _sequence_logps(model, rows: Rows) -> torch.Tensor:
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


# --- models, reference, checkpoints ----------------------------------------------------------


def _is_adapter(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _load_policy(tc: TrainConfig, checkpoint: Path | None):
    """The policy at the start of training, or as ``checkpoint`` saved it, on the GPU if any."""
    if checkpoint is None:
        model, tokenizer = load_policy(tc, tc.online_dpo.init_adapter)
    elif (checkpoint / "adapter_config.json").exists():
        model, tokenizer = load_policy(tc, init_adapter=checkpoint)
    else:
        model, tokenizer = load_policy(tc.model_copy(update={"model": str(checkpoint)}))
    return model.to(_device()), tokenizer


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _reference(model, tc: TrainConfig) -> Callable[[Rows], torch.Tensor]:
    """Log-probabilities under the policy as it was when online DPO started (module docstring)."""
    if not _is_adapter(model):
        frozen, _ = load_policy(tc)
        frozen.to(_device()).eval().requires_grad_(False)
        return lambda rows: _sequence_logps(frozen, rows)
    name = None
    if tc.online_dpo.init_adapter is not None:
        name = REFERENCE_ADAPTER
        model.load_adapter(str(tc.online_dpo.init_adapter), adapter_name=name, is_trainable=False)

    def logps(rows: Rows) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with use_adapter(model, name):
                return _sequence_logps(model, rows)
        finally:
            model.train(was_training)

    return logps


def _reference_name(model, tc: TrainConfig) -> str:
    if not _is_adapter(model):
        return "frozen copy of the starting model"
    if tc.online_dpo.init_adapter is not None:
        return f"frozen copy of init_adapter {tc.online_dpo.init_adapter}"
    return "base model (adapter disabled)"


def _save_round(output_dir: Path, model, tokenizer, optimizer, history: list[dict]) -> Path:
    """``round-N`` for the N rounds in ``history``, in ``train.checkpoint``'s format."""
    state = TrainingState(len(history), len(history), {"history": history})
    return save(
        output_dir, CHECKPOINT_KIND, state, optimizer, lambda f: save_weights(model, f, tokenizer)
    )


def _name(path: Path | None) -> str | None:
    return None if path is None else str(path)
