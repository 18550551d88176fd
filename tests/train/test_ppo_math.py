"""PPO's arithmetic against numbers worked out by hand (the working is in each test)."""

from __future__ import annotations

import math

import pytest
import torch

from collabrl.train.ppo_math import (
    gae,
    kl_penalised_rewards,
    last_token_index,
    masked_mean,
    ppo_losses,
    whiten,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(actual, *rows):
    torch.testing.assert_close(actual, t(*rows), rtol=1e-6, atol=1e-9)


def test_gae_matches_a_hand_computation():
    # gamma 0.9, lam 0.8 (gamma * lam = 0.72); the value after the last token is 0
    # t=2: delta = 1.0 + 0         - 0.3 =  0.70             A2 = 0.70
    # t=1: delta = 0.0 + 0.9 * 0.3 - 0.4 = -0.13 ; A1 = -0.13 + 0.72 * 0.70  = 0.374
    # t=0: delta = 0.0 + 0.9 * 0.4 - 0.5 = -0.14 ; A0 = -0.14 + 0.72 * 0.374 = 0.12928
    # returns = A + V = [0.62928, 0.774, 1.0]
    advantages, returns = gae(t([0.0, 0.0, 1.0]), t([0.5, 0.4, 0.3]), gamma=0.9, lam=0.8)
    close(advantages, [0.12928, 0.374, 0.7])
    close(returns, [0.62928, 0.774, 1.0])


def test_gae_ends_the_episode_at_the_last_masked_token():
    # the padding (9.0, 7.0) is ignored: the episode ends after token 1
    # t=1: delta = 0.5 + 0         - 0.2 = 0.30 ; A1 = 0.30
    # t=0: delta = 0.2 + 0.9 * 0.2 - 0.1 = 0.28 ; A0 = 0.28 + 0.72 * 0.30 = 0.496
    rewards, values, mask = t([0.2, 0.5, 9.0]), t([0.1, 0.2, 7.0]), t([1, 1, 0])
    advantages, returns = gae(rewards, values, gamma=0.9, lam=0.8, mask=mask)
    close(advantages, [0.496, 0.3, 0.0])
    close(returns, [0.596, 0.5, 0.0])


def test_gae_with_gamma_and_lam_one_is_reward_to_go_minus_value():
    rewards, values = t([1.0, -2.0, 4.0]), t([0.5, 1.5, -1.0])
    advantages, returns = gae(rewards, values, gamma=1.0, lam=1.0)
    close(advantages, [3.0 - 0.5, 2.0 - 1.5, 4.0 + 1.0])
    close(returns, [3.0, 2.0, 4.0])


def test_whiten_uses_masked_positions_only():
    # mean 2, population variance (1 + 0 + 1) / 3 = 2/3, std = 0.81650
    whitened = whiten(t([1.0, 2.0, 3.0, 100.0]), t([1, 1, 1, 0]))
    s = math.sqrt(1.5)  # 1 / 0.81650
    close(whitened, [-s, 0.0, s, 0.0])
    assert masked_mean(whitened, t([1, 1, 1, 0])).item() == pytest.approx(0.0, abs=1e-12)


def test_kl_penalised_rewards_put_the_score_on_the_last_reply_token():
    # row 0: kl = [0.5, 0, 0.5] -> rewards = -0.1 * kl, + 2.0 at the last token
    # row 1 (last token at 1): kl = [0, 1, (masked)] -> [0, -0.1 - 1.0, 0]
    logp = t([-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0])
    ref = t([-1.5, -2.0, -1.0], [-1.0, -2.0, -1.0])
    mask = t([1, 1, 1], [1, 1, 0])
    rewards, kl = kl_penalised_rewards(t(2.0, -1.0), logp, ref, mask, kl_coef=0.1)
    close(kl, [0.5, 0.0, 0.5], [0.0, 1.0, 0.0])
    close(rewards, [-0.05, 0.0, 1.95], [0.0, -1.1, 0.0])
    assert last_token_index(mask).tolist() == [2, 1]


def test_ppo_losses_on_crafted_ratios():
    # clip_range 0.2; per token (A, ratio) -> max(-A * r, -A * clip(r)):
    #   (1, 1.5): max(-1.5, -1.2) = -1.2  clipped one used
    #   (-1, 0.5): max(0.5, 0.8)  =  0.8  clipped one used
    #   (2, 0.9): max(-1.8, -1.8) = -1.8  inside the range
    #   (1, 0.5): max(-0.5, -0.8) = -0.5  pessimistic: the unclipped one
    #   masked token with A = 100, ratio 10: ignored
    # policy = (-1.2 + 0.8 - 1.8 - 0.5) / 4 = -0.675, clip fraction 2 / 4
    ratios = [1.5, 0.5, 0.9, 0.5, 10.0]
    old_logp = t([-1.0] * 5)
    logp = old_logp + torch.log(t(ratios))
    advantages = t([1.0, -1.0, 2.0, 1.0, 100.0])
    mask = t([1, 1, 1, 1, 0])
    # value_clip_range 0.2; per token (V, old V, R) -> max((V - R)^2, (Vclip - R)^2):
    #   (1.0, 0.5, 0.0): Vclip 0.7 -> max(1.0, 0.49)  = 1.0
    #   (0.0, 0.0, 1.0): Vclip 0.0 -> max(1.0, 1.0)   = 1.0
    #   (0.5, 0.0, 0.6): Vclip 0.2 -> max(0.01, 0.16) = 0.16  the clipped one is worse
    #   (0.2, 0.2, 0.2): 0
    # value = 0.5 * (1 + 1 + 0.16 + 0) / 4 = 0.27
    values, old_values = t([1.0, 0.0, 0.5, 0.2, 50.0]), t([0.5, 0.0, 0.0, 0.2, 0.0])
    returns = t([0.0, 1.0, 0.6, 0.2, -50.0])
    losses = ppo_losses(
        logp,
        old_logp,
        advantages,
        values,
        old_values,
        returns,
        mask,
        clip_range=0.2,
        value_clip_range=0.2,
    )
    assert losses.policy.item() == pytest.approx(-0.675)
    assert losses.clip_fraction.item() == pytest.approx(0.5)
    assert losses.value.item() == pytest.approx(0.27)
    logs = [math.log(r) for r in ratios[:4]]
    assert losses.approx_kl.item() == pytest.approx(0.5 * sum(x * x for x in logs) / 4)


def test_ppo_policy_gradient_is_zero_where_the_clip_is_active():
    logp = torch.log(t([1.5, 0.9])).requires_grad_()
    losses = ppo_losses(
        logp,
        t([0.0, 0.0]),
        t([1.0, 1.0]),
        t([0.0, 0.0]),
        t([0.0, 0.0]),
        t([0.0, 0.0]),
        t([1, 1]),
        clip_range=0.2,
        value_clip_range=0.2,
    )
    losses.policy.backward()
    # token 0 is clipped (no gradient); token 1: d/dlogp of -A * exp(logp) / 2 = -0.9 / 2
    close(logp.grad, [0.0, -0.45])
