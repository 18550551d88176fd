"""Benchmark: one optimizer step of our offline-DPO recipe versus a hand-written DPO step.

Run:  .venv/bin/python benchmarks/dpo_step.py [--pairs 4] [--prompt-len 128] [--completion-len 128]
          [--steps 8] [--warmup 2] [--model smollm2-135m-instruct] [--lora-r 32] [--device auto]
      GPU shape: --random-init qwen2-1.5b --pairs 8 --prompt-len 512 --completion-len 512 --lora-r 32

Both arms train the same LoRA adapter (same base weights, config, dtype, batch and lengths):

- recipe: the DPOTrainer exactly as ``collabrl.train.dpo.build_trainer`` configures it, fed by
  an export folder of synthetic pairs whose prompt and completions have exactly the requested
  token counts; everything its training loop does per step (data loading, the reference forward
  with the adapter disabled, metrics, logging, gradient clipping, optimizer and scheduler) is
  timed, checkpoints excepted (``save_steps`` lies beyond the run);
- hand: policy forward/backward on chosen+rejected concatenated into one batch, reference
  forward with the adapter disabled under ``no_grad``, log-probabilities from the logits of the
  completion positions only (``logits_to_keep``), the sigmoid DPO loss, gradient clipping to 1.0
  (the Trainer's default) and an AdamW step; the same autocast as the Trainer.

The arms are interleaved (a hand step runs right after each recipe step, from a callback), so
both see the same load from other processes on this machine; the first ``--warmup`` steps of
each are excluded and the median of the rest is reported. Tokens per second count every token
of the 2 x pairs sequences. Model: SmolLM2-135M-Instruct when it is available, else the tiny
random model; ``--random-init qwen2-1.5b`` builds a Qwen2-1.5B-shaped random model offline.

Goal: ratio = recipe_step_s / hand_step_s <= 1.2. The last line printed is one JSON object:
model, device, recipe_step_s, hand_step_s, ratio, tokens_per_s_recipe, tokens_per_s_hand.

Findings (2-core CPU, SmolLM2, 4 pairs x 128+128 tokens, bf16). With TRL 1.16 as shipped the
ratio was about 1.48: DPOTrainer's fused LM head, on a device without Triton, projects EVERY
position (prompt included) through the LM head, in fp32 tiles with a recompute in the backward.
``collabrl.train.lm_head`` lets it score only the completion positions on eager CPU/MPS too
(same numbers): 8 timed steps, 1 torch thread, while another benchmark held the other core:
{"recipe_step_s": 25.07, "hand_step_s": 23.47, "ratio": 1.068}. On CUDA with Triton TRL already
scores completions only: one H200, bf16, the GPU shape above (8 timed steps after 2 warm-up):
{"recipe_step_s": 0.6653, "hand_step_s": 0.6242, "ratio": 1.066, "tokens_per_s_recipe": 24624.7}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORDS = (" the", " a", " and", " to", " of", " is", " you", " it", "the", "a", "x", "y")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="preference pairs per step")
    parser.add_argument("--prompt-len", type=int, default=128, help="prompt tokens")
    parser.add_argument("--completion-len", type=int, default=128, help="tokens per completion")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps per arm")
    parser.add_argument(
        "--model", default="smollm2-135m-instruct", help="folder, hub id, alias or 'tiny'"
    )
    parser.add_argument("--random-init", choices=["qwen2-1.5b"], help="random model of this shape")
    parser.add_argument("--lora-r", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float32"],
        help="train.dtype of the recipe (auto: bf16 where supported)",
    )
    return parser.parse_args()


def pick_model(args: argparse.Namespace, workdir: Path) -> tuple[str, str]:
    """(path for from_pretrained, name for the report)."""
    from collabrl.models import resolve_model
    from collabrl.testing.tiny_model import save_tiny_chat_model

    if args.random_init:
        return str(save_random_qwen2(workdir / "qwen2-1.5b-random")), "qwen2-1.5b (random init)"
    if args.model == "tiny":
        return str(save_tiny_chat_model(workdir / "tiny")), "tiny random model"
    try:
        return resolve_model(args.model), args.model
    except FileNotFoundError:
        return str(
            save_tiny_chat_model(workdir / "tiny")
        ), "tiny random model (SmolLM2 not installed)"


def save_random_qwen2(folder: Path) -> Path:
    """A Qwen2-1.5B-shaped model with random weights (bf16) and the tiny test tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from collabrl.testing.tiny_model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = Qwen2Config(
        hidden_size=1536,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        intermediate_size=8960,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        dtype="bfloat16",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def one_token_words(tokenizer) -> list[str]:
    """Two words that tokenize to exactly one token each, however many times repeated."""
    found = [
        w
        for w in WORDS
        if all(len(tokenizer(w * k, add_special_tokens=False)["input_ids"]) == k for k in (1, 2, 7))
    ]
    if len(found) < 2:
        raise SystemExit("no two single-token words found for this tokenizer")
    return found[:2]


def exact_pair(tokenizer, prompt_len: int, completion_len: int) -> dict:
    """A preference pair whose prompt and completions have exactly the requested token counts."""
    from collabrl.train.data import completion_length, token_ids

    a, b = one_token_words(tokenizer)

    def prompt(n: int) -> list[dict]:
        return [{"role": "user", "content": a * n}]

    def reply(word: str, n: int) -> list[dict]:
        return [{"role": "assistant", "content": word * n}]

    n_prompt = prompt_len - len(token_ids(tokenizer, prompt(0), generation_prompt=True))
    n_reply = completion_len - completion_length(tokenizer, prompt(n_prompt), reply(a, 0))
    row = {
        "prompt": prompt(n_prompt),
        "chosen": reply(a, n_reply),
        "rejected": reply(b, n_reply),
        "conversation_id": "bench",
        "turn": 1,
        "mr_chosen": 1.0,
        "mr_rejected": 0.0,
    }
    assert len(token_ids(tokenizer, row["prompt"], generation_prompt=True)) == prompt_len
    for key in ("chosen", "rejected"):
        assert completion_length(tokenizer, row["prompt"], row[key]) == completion_len
    return row


def recipe_trainer(args, model_path: str, workdir: Path):
    """The DPOTrainer built by our recipe on ``steps + warmup`` batches of exact-length pairs."""
    from collabrl.config import load_config
    from collabrl.testing.train_data import write_jsonl
    from collabrl.train import dpo
    from collabrl.train.common import load_tokenizer

    row = exact_pair(load_tokenizer(model_path), args.prompt_len, args.completion_len)
    total = args.steps + args.warmup
    write_jsonl(workdir / "export" / "dpo_train.jsonl", [row] * (args.pairs * total))
    config = load_config(
        None,
        [
            f"train.model={model_path}",
            f"train.output_dir={workdir / 'run'}",
            f"train.dpo.data={workdir / 'export'}",
            f"train.per_device_batch_size={args.pairs}",
            "train.gradient_accumulation_steps=1",
            f"train.max_steps={total}",
            f"train.save_steps={total + 1}",
            f"train.max_length={args.prompt_len + args.completion_len}",
            f"train.dpo.max_prompt_length={args.prompt_len}",
            f"train.lora.r={args.lora_r}",
            f"train.dtype={args.dtype}",
        ],
    )
    trainer, _ = dpo.build_trainer(config.train)
    return trainer, config.train


def hand_arm(trainer, config, args):
    """A closure running one hand-written DPO step on the recipe's first batch, same shapes."""
    import torch
    import torch.nn.functional as F
    from peft import get_peft_model

    from collabrl.train.common import load_policy, lora_config

    device, completion = trainer.args.device, args.completion_len
    model, _ = load_policy(config.model_copy(update={"lora": None}))
    torch.manual_seed(config.seed)
    model = get_peft_model(model, lora_config(config.lora)).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=config.dpo.learning_rate,
        weight_decay=0.0,
        fused="fused" in str(trainer.args.optim),
    )
    examples = [trainer.train_dataset[i] for i in range(args.pairs)]
    batch = {k: v.to(device) for k, v in trainer.data_collator(examples).items()}
    labels = batch["input_ids"][:, -completion:]  # equal lengths: completions are the last tokens
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(trainer.args.bf16))

    def logps(m) -> torch.Tensor:
        logits = m(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            logits_to_keep=completion + 1,
        ).logits[:, :-1]
        return logits.float().log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1).sum(-1)

    def step() -> float:
        with autocast:
            policy = logps(model)
        with torch.no_grad(), model.disable_adapter(), autocast:
            reference = logps(model)
        chosen, rejected = (policy - reference).chunk(2)
        loss = -F.logsigmoid(config.dpo.beta * (chosen - rejected)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, trainer.args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def interleaved_timings(trainer, hand_step, sync) -> tuple[list[float], list[float]]:
    """Train with the recipe; after each of its steps run and time one hand step."""
    from transformers import TrainerCallback

    class Interleave(TrainerCallback):
        def __init__(self) -> None:
            self.recipe: list[float] = []
            self.hand: list[float] = []
            self.mark = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            started = time.perf_counter()
            self.recipe.append(started - self.mark)
            hand_step()
            sync()
            self.mark = time.perf_counter()
            self.hand.append(self.mark - started)
            print(
                f"step {state.global_step}: recipe {self.recipe[-1]:.3f} s, "
                f"hand {self.hand[-1]:.3f} s",
                file=sys.stderr,
                flush=True,
            )

    timer = Interleave()
    trainer.add_callback(timer)
    trainer.train()
    return timer.recipe, timer.hand


def main() -> None:
    args = parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory(prefix="dpo-bench-") as tmp:
        workdir = Path(tmp)
        model_path, model_name = pick_model(args, workdir)
        trainer, config = recipe_trainer(args, model_path, workdir)
        hand_step = hand_arm(trainer, config, args)
        device = trainer.args.device
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        recipe, hand = interleaved_timings(trainer, hand_step, sync)
    recipe_s = statistics.median(recipe[args.warmup :])
    hand_s = statistics.median(hand[args.warmup :])
    tokens = 2 * args.pairs * (args.prompt_len + args.completion_len)
    print(f"recipe steps (s): {[round(t, 3) for t in recipe]}", file=sys.stderr)
    print(f"hand steps (s):   {[round(t, 3) for t in hand]}", file=sys.stderr)
    dtype = "bf16" if trainer.args.bf16 else "fp32"
    print(
        json.dumps(
            {
                "model": model_name,
                "device": f"{device.type} ({dtype}, {args.pairs} pairs x "
                f"{args.prompt_len}+{args.completion_len} tokens, "
                f"LoRA r={args.lora_r})",
                "recipe_step_s": round(recipe_s, 4),
                "hand_step_s": round(hand_s, 4),
                "ratio": round(recipe_s / hand_s, 3),
                "tokens_per_s_recipe": round(tokens / recipe_s, 1),
                "tokens_per_s_hand": round(tokens / hand_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
