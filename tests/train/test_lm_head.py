"""TRL's fused LM head, compacted to labelled positions on CPU: same numbers, fewer rows."""

from __future__ import annotations

import pytest
import torch
from trl.kernels import chunked_logprob
from trl.trainer import utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from collabrl.testing.tiny_model import tiny_chat_model
from collabrl.train import lm_head


@pytest.fixture
def stock_switch(monkeypatch):
    """Run each test from TRL's own switch, and restore it afterwards."""
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)


def fused_log_probs(rows_seen: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-probs, label mask and the head's gradient, counting rows sent to the kernel."""
    model, _ = tiny_chat_model()
    add_fused_lm_head(model)
    input_ids = torch.randint(3, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    labels = input_ids.clone()
    labels[:, :16] = -100  # a prompt of 16 tokens, a completion of 8
    kernel = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        rows_seen.append(hidden.shape[0])
        return kernel(hidden, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    head_grad = model.get_output_embeddings().weight.grad.clone()
    return out.log_probs.detach(), out.label_mask, head_grad


def test_cpu_head_scores_every_position_without_the_switch(stock_switch):
    rows: list[int] = []
    fused_log_probs(rows)
    assert rows == [2 * 23]  # the stock head on CPU: all shifted positions, prompt included


def test_switch_scores_only_labelled_positions_with_identical_results(stock_switch):
    full_rows: list[int] = []
    full, mask, full_grad = fused_log_probs(full_rows)
    assert lm_head.score_labelled_positions_only()
    compact_rows: list[int] = []
    compact, compact_mask, compact_grad = fused_log_probs(compact_rows)
    assert compact_rows == [int(mask.sum())] == [2 * 8]
    assert torch.equal(mask, compact_mask)
    torch.testing.assert_close(compact, full, rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(compact[~mask]) == 0
    torch.testing.assert_close(compact_grad, full_grad, rtol=1e-4, atol=1e-6)


def test_switch_is_idempotent_and_keeps_triton_devices(stock_switch):
    assert lm_head.score_labelled_positions_only()
    patched = trl_utils._use_triton
    assert lm_head.score_labelled_positions_only()
    assert trl_utils._use_triton is patched  # not wrapped twice
    assert patched(torch.device("cpu"))
    assert patched(torch.device("cuda")) == chunked_logprob._use_triton(torch.device("cuda"))


def test_missing_trl_switch_is_reported_not_fatal(monkeypatch, caplog):
    monkeypatch.delattr(trl_utils, "_use_triton")
    assert not lm_head.score_labelled_positions_only()
    assert "_use_triton not found" in caplog.text
