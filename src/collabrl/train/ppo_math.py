"""The arithmetic of PPO as pure tensor functions, small enough to check by hand.

Kept apart from the recipe (``ppo.py``) so that every formula has a test with the numbers written
out. Per-token tensors are ``[batch, tokens]``; a 0/1 ``mask`` marks the reply tokens (the
actions), and masked positions never contribute to a mean. The episode is one assistant reply:
its reward, the multiturn-aware reward (MR), arrives at its last token, every token pays a KL
penalty to the reference policy, and the episode ends after the last token (the value there is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / std`` over the masked positions (population variance); 0 elsewhere."""
    mean = masked_mean(x, mask)
    variance = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(variance + eps) * mask


def last_token_index(mask: Tensor) -> Tensor:
    """Index of each row's last masked position (rows must have at least one)."""
    positions = torch.arange(1, mask.shape[-1] + 1, device=mask.device)
    return (mask * positions).argmax(dim=-1)


def kl_penalised_rewards(
    scores: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, kl_coef: float
) -> tuple[Tensor, Tensor]:
    """(rewards, kl): ``-kl_coef * (logp - ref_logp)`` at every reply token, plus each row's
    score (``[batch]``) at its last reply token; ``kl`` is the per-token estimate used."""
    kl = (logp - ref_logp) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores
    return rewards, kl


def gae(
    rewards: Tensor, values: Tensor, gamma: float, lam: float, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(advantages, returns) by generalised advantage estimation, walking back from the end:
    ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``,
    ``returns = A + V``; the value after the last (masked) token is 0."""
    if mask is not None:
        rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    width = rewards.shape[-1]
    for t in reversed(range(width)):
        next_value = values[..., t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        running = delta + gamma * lam * running
        advantages[..., t] = running
    returns = advantages + values
    if mask is not None:
        advantages, returns = advantages * mask, returns * mask
    return advantages, returns


@dataclass(frozen=True)
class PPOLosses:
    """The two losses to minimise and two diagnostics, each a scalar tensor."""

    policy: Tensor
    value: Tensor
    clip_fraction: Tensor  # share of tokens where the clipped objective was the one used
    approx_kl: Tensor  # 0.5 * mean((logp - old_logp)^2): how far this epoch moved the policy


def ppo_losses(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_range: float,
    value_clip_range: float,
) -> PPOLosses:
    """Clipped surrogate policy loss and clipped value loss, token-level means over ``mask``.

    policy: ``mean(max(-A * r, -A * clip(r, 1 - c, 1 + c)))`` with ``r = exp(logp - old_logp)``;
    value: ``0.5 * mean(max((V - R)^2, (V_clipped - R)^2))`` with
    ``V_clipped = old_V + clip(V - old_V, -vc, vc)``.
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    policy = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    values_clipped = old_values + (values - old_values).clamp(-value_clip_range, value_clip_range)
    value_error = torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2)
    value = 0.5 * masked_mean(value_error, mask)
    approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return PPOLosses(policy=policy, value=value, clip_fraction=clip_fraction, approx_kl=approx_kl)
