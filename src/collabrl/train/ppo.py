"""PPO with the multiturn-aware reward (MR): our own compact recipe (TRL 1.x has no PPO trainer).

The paper trains PPO from the SFT model with MR as the reward (lr 2e-6, batch 64, 5 epochs).
One update here:
1. sample one reply per prefix from the live policy and score it with MR (``ppo_rollouts``);
   a reply MR could not score is left out of the update and counted, never scored 0; a reply
   the length limit cut is trained without an end-of-turn token and counted (``cut``);
2. with the weights that sampled them, compute every reply token's log-probability, the value
   head's estimate and the reference policy's log-probability (no gradients, dropout off);
3. reward = MR at the reply's last token minus ``kl_coef * (logp - ref_logp)`` at every token;
   advantages by GAE over the reply tokens, whitened over the batch (``ppo_math``);
4. ``ppo.epochs`` passes over the rollouts in shuffled micro-batches of
   ``train.per_device_batch_size``, ``train.gradient_accumulation_steps`` micro-batches per AdamW
   step, gradients clipped to ``ppo.max_grad_norm``; loss = clipped surrogate +
   ``value_coef`` * clipped value loss. LoRA dropout stays as configured during these passes.

The model: the base with a LoRA adapter (fresh, or ``ppo.init_adapter`` loaded as trainable) and
a linear value head on the last hidden state, trained jointly. The reference policy needs no
second model: it is a frozen copy of ``ppo.init_adapter`` loaded as a second adapter (so the KL
anchors the policy to the SFT model it started from), or, from a fresh adapter, the base with the
adapter disabled. The ``reward.future_assistant_role`` role (``policy`` by default) supplies the
sampling settings (temperature, max_tokens, concurrency, batch size; added as ``hf_local`` on
``train.model`` when missing), never the model: that is always the live one, which also plays
the future assistant inside MR (``collabrl.train.live_reward``, as in every online recipe).
Token log-probabilities use its temperature, on the reply re-tokenised from its text (the
backend returns text; for a trained model these are the sampled tokens almost always).

Safety: a checkpoint ``checkpoint-N`` every ``train.save_steps`` updates and at the end
(``train.checkpoint``'s format: adapter, value head, optimizer, RNG states, every update's metrics
in its state), written to a temporary folder and renamed, so a crash never leaves a half-written
one. ``train.resume`` continues from the last checkpoint exactly (updates are seeded from
``(train.seed, update)``) and refuses one with missing files. A NaN or infinite loss or gradient
norm stops training before the optimizer step, leaving the last checkpoint as the last good state.

``run_info.json`` and the tracker record every role's usage (the live policy's tokens and
requests too) and each reward metric's mean per update (``metric/<name>``).

Budget (``collabrl.budget``; an update is the unit): the policy, user and judge roles of the
rollouts are behind its guard (the live policy counts tokens and requests; money only with a
price). An update does not start when spent + spent per finished update would exceed a cap; an
update in which a cap is reached is dropped whole (its model calls all come before the
optimisation) and the RNG states are put back as they were before it. Then the last finished
update is checkpointed (if ``save_steps`` had not), ``run_info.json`` records
``stopped: "budget"``, the spend and ``last_checkpoint``, no ``final`` is written and
``BudgetStop`` is raised; a rerun with a larger cap resumes from that checkpoint.

Devices: this recipe runs on one device (the first GPU, else the CPU); sampling, MR scoring and
optimisation alternate in one process. For larger models, point the user and judge roles at a
served model (vLLM/SGLang) and keep this process for the policy. It is not a DDP/FSDP recipe:
launched with several processes (``WORLD_SIZE`` > 1) it refuses to start.
"""

from __future__ import annotations

import contextlib
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from collabrl.budget import Budget
from collabrl.config import Config, ConfigError, TrainConfig
from collabrl.tracking import require_trackers
from collabrl.tracking_figures import ppo_figures, usage_figures
from collabrl.train.checkpoint import (
    TrainingState,
    find_resumable,
    folder_name,
    restore,
    rng_state,
    save,
    save_weights,
    set_rng_state,
)
from collabrl.train.common import (
    NonFiniteLossError,
    budget_stop,
    budgeted,
    load_policy,
    refuse_multiple_processes,
    write_run_info,
)
from collabrl.train.live_reward import LiveReward, derived_seed, live_policy_backend
from collabrl.train.ppo_math import gae, kl_penalised_rewards, ppo_losses, whiten
from collabrl.train.ppo_rollouts import (
    Batch,
    ScoredReply,
    collate,
    collect_replies,
    encode,
    update_prefixes,
)
from collabrl.train.prefixes import Prefix, load_prefixes
from collabrl.train.progress import UnitReporter

REFERENCE_ADAPTER = "reference"
VALUE_HEAD_FILE = "value_head.safetensors"
CHECKPOINT_KIND = "checkpoint"  # checkpoint-<updates done>
# What a PPO checkpoint holds beyond train.checkpoint's optimizer, RNG and training state.
CHECKPOINT_FILES = ("adapter_model.safetensors", "adapter_config.json", VALUE_HEAD_FILE)


class ActorCritic:
    """The policy (a PEFT model), its value head and tokenizer, on one device."""

    def __init__(self, model, tokenizer, value_head: torch.nn.Linear) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.value_head = value_head
        self.eos_id = tokenizer.eos_token_id
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.parameters += list(value_head.parameters())

    @classmethod
    def load(cls, train_config: TrainConfig, checkpoint: Path | None) -> ActorCritic:
        init_adapter = train_config.ppo.init_adapter
        if train_config.lora is None and init_adapter is None:
            raise ConfigError(
                "PPO trains a LoRA adapter (the reference is the model without "
                "it): set train.lora or train.ppo.init_adapter"
            )
        model, tokenizer = load_policy(train_config, checkpoint or init_adapter)
        if init_adapter is not None:
            model.load_adapter(str(init_adapter), adapter_name=REFERENCE_ADAPTER)
        if train_config.gradient_checkpointing:
            model.enable_input_require_grads()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        hidden = model.config.get_text_config().hidden_size
        head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        if checkpoint is not None:
            head.load_state_dict(load_file(checkpoint / VALUE_HEAD_FILE))
        return cls(model.to(device).eval(), tokenizer, head.to(device))

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def forward(self, batch: Batch, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities, values) of the reply positions, ``[batch, reply width]``."""
        width = batch.reply_width
        out = self.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=width + 1,
            output_hidden_states=True,
            use_cache=False,
        )
        logits = out.logits[:, :-1].float() / temperature
        targets = batch.input_ids[:, -width:, None]
        logp = logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(dim=-1)
        values = self.value_head(out.hidden_states[-1][:, -width - 1 : -1].float()).squeeze(-1)
        return logp * batch.mask, values * batch.mask

    @contextlib.contextmanager
    def reference(self):
        """The reference policy for the duration of the block."""
        if REFERENCE_ADAPTER not in self.model.peft_config:
            with self.model.disable_adapter():
                yield
            return
        self.model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield
        finally:
            self.model.set_adapter("default")

    def save(self, folder: Path) -> None:
        save_weights(self.model, folder)
        save_file(
            {k: v.contiguous() for k, v in self.value_head.state_dict().items()},
            str(folder / VALUE_HEAD_FILE),
        )


@dataclass(frozen=True)
class Experience:
    """Token pairs of the scored rollouts and their per-token tensors ``[rows, reply width]``."""

    pairs: list[tuple[list[int], list[int]]]
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    temperature: float  # the sampling temperature, applied to every log-probability

    def micro_batch(self, rows: list[int], pad_id: int, device) -> tuple[Batch, dict]:
        batch = collate([self.pairs[i] for i in rows], pad_id, device)
        width = batch.reply_width
        fields = ("old_logp", "old_values", "advantages", "returns")
        return batch, {name: getattr(self, name)[rows, :width] for name in fields}


class PPO:
    """The recipe's state (actor, optimizer, live reward, updates done) and its steps: ``update``
    samples and scores replies, turns the scored ones into ``experience``, then ``optimise``s."""

    def __init__(self, config: Config, actor: ActorCritic, live: LiveReward) -> None:
        self.train_config, self.settings = config.train, config.train.ppo
        self.actor, self.live = actor, live
        self.optimizer = torch.optim.AdamW(actor.parameters, lr=self.settings.learning_rate)
        self.state = TrainingState(extra={"history": []})
        self.latest: Path | None = None  # the last checkpoint written or resumed from

    @classmethod
    def load(cls, config: Config, checkpoint: Path | None, budget: Budget) -> PPO:
        """The actor fresh or as ``checkpoint`` saved it (with optimizer and updates done); the
        live reward behind ``budget``."""
        actor = ActorCritic.load(config.train, checkpoint)
        live = LiveReward(config, live_policy_backend(config, actor.model, actor.tokenizer), budget)
        try:
            recipe = cls(config, actor, live)
            if checkpoint is not None:
                recipe.state = restore(checkpoint, recipe.optimizer, device=actor.device)
                recipe.latest = checkpoint
        except BaseException:
            live.close()
            raise
        return recipe

    def update(self, index: int, prefixes: list[Prefix]) -> dict:
        """Sample, score, and optimise on one batch of prefixes; the update's metrics. Every
        model call (so a ``BudgetExceeded``) comes before the optimisation."""
        chosen = update_prefixes(prefixes, index, self.settings.rollouts, self.train_config.seed)
        replies = self.live.run(collect_replies(self.live, self.actor.tokenizer, chosen, index))
        scored = [r for r in replies if r.mr is not None]
        metrics: dict = {
            "reward_mean": statistics.fmean(r.mr for r in scored) if scored else None,
            "scored": len(scored),
            "unscored": len(replies) - len(scored),
            "cut": sum(r.cut for r in replies),
            "unscored_reasons": dict(Counter(r.reason for r in replies if r.mr is None)),
            **metric_means(scored),
        }
        if scored:
            experience, stats = self.experience(scored, self.live.generation.temperature or 1.0)
            metrics |= stats | self.optimise(experience, index)
        return metrics

    @torch.no_grad()
    def experience(
        self, replies: list[ScoredReply], temperature: float
    ) -> tuple[Experience, dict[str, float]]:
        """Log-probabilities, values, KL-penalised rewards and whitened GAE advantages."""
        actor, max_length = self.actor, self.train_config.max_length
        pairs = [encode(actor.tokenizer, r, actor.eos_id, max_length) for r in replies]
        width = max(len(reply) for _, reply in pairs)
        logp, values, ref_logp, mask = (
            torch.zeros(len(pairs), width, device=actor.device) for _ in range(4)
        )
        step = self.train_config.per_device_batch_size
        for start in range(0, len(pairs), step):
            batch = collate(pairs[start : start + step], actor.tokenizer.pad_token_id, actor.device)
            rows, cols = slice(start, start + step), slice(0, batch.reply_width)
            logp[rows, cols], values[rows, cols] = actor.forward(batch, temperature)
            with actor.reference():
                ref_logp[rows, cols] = actor.forward(batch, temperature)[0]
            mask[rows, cols] = batch.mask
        settings = self.settings
        scores = torch.tensor([r.mr for r in replies], device=actor.device)
        rewards, kl = kl_penalised_rewards(scores, logp, ref_logp, mask, settings.kl_coef)
        advantages, returns = gae(rewards, values, settings.gamma, settings.lam, mask)
        experience = Experience(pairs, logp, values, whiten(advantages, mask), returns, temperature)
        stats = {"kl": kl.sum(dim=1).mean().item(), "reply_tokens": mask.sum(dim=1).mean().item()}
        return experience, stats

    def optimise(self, experience: Experience, update: int) -> dict[str, float]:
        """``ppo.epochs`` passes of clipped PPO over the experience; mean losses and diagnostics."""
        micro = self.train_config.per_device_batch_size
        group = micro * self.train_config.gradient_accumulation_steps
        shuffle = torch.Generator().manual_seed(derived_seed(self.train_config.seed, update, 2))
        logged: dict[str, list[float]] = defaultdict(list)
        self.actor.model.train()
        try:
            for _ in range(self.settings.epochs):
                order = torch.randperm(len(experience.pairs), generator=shuffle).tolist()
                for start in range(0, len(order), group):
                    rows_of_step = order[start : start + group]
                    chunks = [
                        rows_of_step[i : i + micro] for i in range(0, len(rows_of_step), micro)
                    ]
                    for rows in chunks:
                        losses = self._backward(experience, rows, len(chunks), update)
                        for name, value in losses.items():
                            logged[name].append(value)
                    self._optimizer_step(update)
        finally:
            self.actor.model.eval()
        return {name: statistics.fmean(values) for name, values in logged.items()}

    def _backward(
        self, experience: Experience, rows: list[int], accumulation: int, update: int
    ) -> dict[str, float]:
        settings, actor = self.settings, self.actor
        batch, old = experience.micro_batch(rows, actor.tokenizer.pad_token_id, actor.device)
        logp, values = actor.forward(batch, experience.temperature)
        losses = ppo_losses(
            logp,
            old["old_logp"],
            old["advantages"],
            values,
            old["old_values"],
            old["returns"],
            batch.mask,
            settings.clip_range,
            settings.value_clip_range,
        )
        loss = (losses.policy + settings.value_coef * losses.value) / accumulation
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} in update {update + 1}; training stopped before "
                f"applying it. The last checkpoint in {self.train_config.output_dir} is intact."
            )
        loss.backward()
        return {
            "policy_loss": losses.policy.item(),
            "value_loss": losses.value.item(),
            "clip_fraction": losses.clip_fraction.item(),
            "approx_kl": losses.approx_kl.item(),
        }

    def _optimizer_step(self, update: int) -> None:
        norm = torch.nn.utils.clip_grad_norm_(self.actor.parameters, self.settings.max_grad_norm)
        if not torch.isfinite(norm):
            raise NonFiniteLossError(
                f"gradient norm became {norm.item()} in update {update + 1}; training stopped "
                f"before applying it. The last checkpoint is intact."
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def record(self, metrics: dict) -> None:
        """One more update done, with its metrics."""
        done = self.state.step + 1
        history = [*self.state.extra["history"], metrics]
        self.state = TrainingState(done, done, {"history": history})

    def save(self) -> Path:
        """``checkpoint-<updates done>`` in ``train.checkpoint``'s format."""
        folder = self.train_config.output_dir
        self.latest = save(folder, CHECKPOINT_KIND, self.state, self.optimizer, self.actor.save)
        return self.latest

    def saved(self) -> bool:
        """Whether the last checkpoint holds every update done."""
        return self.latest is not None and self.latest.name == folder_name(
            CHECKPOINT_KIND, self.state.step
        )


def metric_means(replies: list[ScoredReply]) -> dict[str, float]:
    """``metric/<name>``: each reward metric's mean over the scored replies that have it."""
    names = sorted({name for r in replies for name in r.metric_means})
    values = {n: [v for r in replies if (v := r.metric_means.get(n)) is not None] for n in names}
    return {f"metric/{n}": statistics.fmean(vs) for n, vs in values.items() if vs}


def train(config: Config) -> Path:
    """Run PPO as configured in ``config.train`` (see the module docstring); returns the final
    adapter folder ``<train.output_dir>/final`` (adapter, value head, tokenizer)."""
    from transformers import set_seed

    refuse_multiple_processes("ppo")
    require_trackers(config.tracking)
    train_config, settings = config.train, config.train.ppo
    prefixes = load_prefixes(config, settings.prefixes)
    checkpoint = find_resumable(train_config, CHECKPOINT_KIND, CHECKPOINT_FILES)
    set_seed(train_config.seed)
    budget = Budget(config.budget)
    recipe = PPO.load(config, checkpoint, budget)
    facts = {"prefixes": len(prefixes), "resumed_from": checkpoint and str(checkpoint)}
    write_run_info(train_config, "ppo", **facts)
    reporter = UnitReporter(config, "ppo", "update", settings.updates, recipe.state.step)
    with recipe.live, reporter:
        for update in range(recipe.state.step, settings.updates):
            before = rng_state()
            metrics = budgeted(budget, recipe.update, update, prefixes)
            if metrics is None:
                set_rng_state(before)  # as if the dropped update never started
                break
            recipe.record(metrics)
            figures = ppo_figures(metrics) | usage_figures("ppo", recipe.live.roles.meter)
            reporter.log(update + 1, metrics, figures, metrics["unscored_reasons"])
            if (update + 1) % train_config.save_steps == 0 or update + 1 == settings.updates:
                recipe.save()
        facts |= {"updates": recipe.state.step, "usage": recipe.live.roles.meter.to_dict()}
    if budget.stopped:
        if recipe.state.step and not recipe.saved():
            recipe.save()
        latest = recipe.latest and str(recipe.latest)
        write_run_info(train_config, "ppo", **facts, last_checkpoint=latest, **budget.manifest())
        raise budget_stop(budget, f"{budget.finished} updates", recipe.latest)
    write_run_info(train_config, "ppo", **facts, **budget.manifest())
    final = train_config.output_dir / "final"
    recipe.actor.save(final)
    recipe.actor.tokenizer.save_pretrained(str(final))
    return final
