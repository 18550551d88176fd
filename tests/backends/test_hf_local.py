"""HFLocalBackend on the tiny random chat model: batching, sampling, stops, errors, live models."""

from __future__ import annotations

import asyncio

import pytest
import torch

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError, RequestRejectedError
from collabrl.backends.hf_local import (
    HFLocalBackend,
    _cpu_has_fast_bf16,
    _pick_dtype,
    _Row,
    _RowSampler,
)
from collabrl.config import HFLocalBackendConfig
from collabrl.testing.tiny_model import save_tiny_chat_model, tiny_chat_model
from collabrl.types import GenerationParams, Message

GREEDY = GenerationParams(temperature=0.0, max_tokens=12)
PROMPTS = [
    "Hi",
    "What is the sum of 12 and 30?",
    "Write a Python function that returns the largest number in a list of integers, please.",
    "Tell me a story.",
    "Summarize it in three sentences: climate, energy, water and cities.",
    "?",
]


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


@pytest.fixture
def tiny():
    return tiny_chat_model(seed=0)


@pytest.fixture
async def backend(tiny):
    model, tokenizer = tiny
    backend = HFLocalBackend(model, tokenizer, max_batch_size=4, max_wait_ms=20)
    yield backend
    await backend.aclose()


def count_generate_calls(model, monkeypatch) -> list[int]:
    """Record the number of rows of every ``model.generate`` call."""
    sizes: list[int] = []
    original = model.generate

    def generate(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return sizes


async def test_is_a_backend_with_an_identity(backend):
    assert isinstance(backend, Backend)
    assert backend.identity() == {"kind": "hf_local", "model": "LlamaForCausalLM"}


async def test_concurrent_greedy_calls_match_one_at_a_time(backend, monkeypatch):
    alone = [(await backend.generate(user(p), GREEDY))[0] for p in PROMPTS]
    sizes = count_generate_calls(backend.model, monkeypatch)
    together = await asyncio.gather(*(backend.generate(user(p), GREEDY) for p in PROMPTS))
    assert [c[0].text for c in together] == [c.text for c in alone]
    assert [c[0].usage for c in together] == [c.usage for c in alone]
    assert len({c.text for c in alone}) > 1  # the prompts really lead to different replies
    assert sizes == [4, 2] and max(sizes) <= backend.max_batch_size


async def test_n_samples_exact_even_beyond_the_batch_size(backend, monkeypatch):
    sizes = count_generate_calls(backend.model, monkeypatch)
    params = GenerationParams(n=7, temperature=1.0, max_tokens=5, seed=3)
    completions = await backend.generate(user("Hello"), params)
    assert len(completions) == 7
    assert max(sizes) <= 4 and sum(sizes) == 7
    assert completions[0].usage.prompt_tokens > 0
    assert all(c.usage.prompt_tokens == 0 for c in completions[1:])
    assert all(c.usage.completion_tokens == 5 and c.finish_reason == "length" for c in completions)
    assert len({c.text for c in completions}) > 1  # distinct draws


async def test_rows_with_different_settings_share_one_batch(backend, monkeypatch):
    sizes = count_generate_calls(backend.model, monkeypatch)
    settings = [
        GenerationParams(temperature=0.0, max_tokens=5),
        GenerationParams(temperature=0.7, top_p=0.5, max_tokens=7, seed=1),
        GenerationParams(temperature=1.3, max_tokens=6, stop=("zzz",), seed=2),
    ]  # seeded: an unseeded row drew EOS early in about 1 run in 30 and ended with "stop"
    results = await asyncio.gather(*(backend.generate(user("Hi"), p) for p in settings))
    assert sizes == [3]
    assert [r[0].usage.completion_tokens for r in results] == [5, 7, 6]
    assert all(r[0].finish_reason == "length" for r in results)


async def test_max_tokens_far_apart_use_separate_batches(backend, monkeypatch):
    sizes = count_generate_calls(backend.model, monkeypatch)
    await asyncio.gather(
        backend.generate(user("Hi"), GenerationParams(temperature=0, max_tokens=4)),
        backend.generate(user("Hi"), GenerationParams(temperature=0, max_tokens=40)),
    )
    assert sizes == [1, 1]


async def test_stop_string_cuts_the_text_and_ends_the_row(backend):
    full = (await backend.generate(user("Tell me a story."), GREEDY))[0]
    stop = full.text[4:6]
    assert full.text.find(stop) == 4
    params = GREEDY.model_copy(update={"stop": ("never-there", stop)})
    cut = (await backend.generate(user("Tell me a story."), params))[0]
    assert cut.text == full.text[:4]
    assert cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens


async def test_eos_ends_with_stop_and_is_not_counted(backend):
    eos, calls = backend.tokenizer.eos_token_id, []

    def end_after_three_tokens(module, inputs, logits):
        calls.append(1)
        if len(calls) == 4:  # prefill + 2 decode steps -> 3 tokens, then EOS
            logits[..., eos] = 1e4
        return logits

    handle = backend.model.lm_head.register_forward_hook(end_after_three_tokens)
    try:
        (completion,) = await backend.generate(user("Hi"), GREEDY)
    finally:
        handle.remove()
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == 3


async def test_seeded_sampling_is_reproducible_whatever_the_batch(backend):
    params = GenerationParams(n=3, temperature=1.0, max_tokens=8, seed=11)
    first = await backend.generate(user("Hi"), params)
    crowd = [backend.generate(user(p), params.model_copy(update={"seed": 5})) for p in PROMPTS]
    again, *_ = await asyncio.gather(backend.generate(user("Hi"), params), *crowd)
    assert [c.text for c in again] == [c.text for c in first]
    later = params.model_copy(update={"n": 1, "first_sample": 2})
    assert (await backend.generate(user("Hi"), later))[0].text == first[2].text
    other = await backend.generate(user("Hi"), params.model_copy(update={"seed": 12}))
    assert [c.text for c in other] != [c.text for c in first]


async def test_tiny_top_p_keeps_only_the_most_likely_token(backend):
    greedy = await backend.generate(user("Hi"), GREEDY)
    nucleus = GREEDY.model_copy(update={"temperature": 1.0, "top_p": 1e-6, "n": 2, "seed": 0})
    assert [c.text for c in await backend.generate(user("Hi"), nucleus)] == [greedy[0].text] * 2


def test_row_sampler_draws_from_the_softmax():
    params = GenerationParams(temperature=1.0, seed=0)
    sampler = _RowSampler([_Row([1], params, 0)], [8], 1, [3], None, torch.device("cpu"))
    scores = torch.tensor([[0.5, 0.3, 0.0, 0.2]]).log()
    draws = torch.cat([sampler._sample(scores) for _ in range(4000)])
    shares = torch.bincount(draws, minlength=4) / len(draws)
    assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.0, 0.2]), atol=0.03)
    assert shares[2] == 0


async def test_prompt_beyond_the_context_is_rejected_alone(backend):
    huge = user("word " * 3000)
    results = await asyncio.gather(
        backend.generate(huge, GREEDY),
        backend.generate(user("Hi"), GREEDY),
        return_exceptions=True,
    )
    assert isinstance(results[0], RequestRejectedError)
    assert "context is 1024 tokens" in str(results[0])
    assert results[1][0].finish_reason == "length"


async def test_model_failure_reaches_the_callers_of_that_batch(backend, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(backend.model, "generate", broken)
    results = await asyncio.gather(
        *(backend.generate(user(p), GREEDY) for p in PROMPTS[:2]), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) and "kaput" in str(r) for r in results)
    monkeypatch.undo()
    assert len(await backend.generate(user("Hi"), GREEDY)) == 1


async def test_event_loop_stays_responsive_during_generation(backend):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    # Seed 31: all four samples run to max_tokens (unseeded, one may draw EOS early).
    params = GenerationParams(n=4, temperature=1.0, max_tokens=300, seed=31)
    started = asyncio.get_running_loop().time()
    await backend.generate(user("Tell me a story."), params)
    elapsed = asyncio.get_running_loop().time() - started
    task.cancel()
    assert elapsed > 0.1 and ticks >= 0.3 * elapsed / 0.01


async def test_a_live_peft_model_in_training_mode_is_accepted(tiny):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.train()
    backend = HFLocalBackend(lora, tokenizer, name="tiny-lora")
    completions = await backend.generate(user("Hi"), GREEDY.model_copy(update={"n": 2}))
    await backend.aclose()
    assert [c.usage.completion_tokens for c in completions] == [12, 12]
    assert completions[0].text == completions[1].text
    assert lora.training  # its mode is given back
    assert backend.identity() == {"kind": "hf_local", "model": "tiny-lora"}


async def test_from_config_loads_a_saved_folder(tmp_path):
    folder = save_tiny_chat_model(tmp_path / "tiny")
    cfg = HFLocalBackendConfig(kind="hf_local", model=str(folder), dtype="float32", device="cpu")
    backend = HFLocalBackend.from_config(cfg)
    model, tokenizer = tiny_chat_model(seed=0)
    reference = HFLocalBackend(model, tokenizer)
    loaded = await backend.generate(user("Hi"), GREEDY)
    expected = await reference.generate(user("Hi"), GREEDY)
    await backend.aclose()
    await reference.aclose()
    assert backend.identity() == {"kind": "hf_local", "model": str(folder)}
    assert loaded[0].text == expected[0].text


def test_auto_dtype():
    assert _pick_dtype("float16", "cpu") is torch.float16
    assert _pick_dtype("auto", "cpu") is (torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32)


def _save_adapter(folder, seed: int):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_chat_model(seed=0)
    torch.manual_seed(seed)  # init_lora_weights=False: random B, so the adapter changes outputs
    lora = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(folder)
    return lora


async def test_from_config_applies_an_adapter_and_names_its_content(tmp_path):
    base = save_tiny_chat_model(tmp_path / "tiny")
    trained = _save_adapter(tmp_path / "adapter", seed=1)
    cfg = HFLocalBackendConfig(
        kind="hf_local",
        model=str(base),
        adapter=tmp_path / "adapter",
        dtype="float32",
        device="cpu",
    )
    backend = HFLocalBackend.from_config(cfg)
    _, tokenizer = tiny_chat_model(seed=0)
    reference = HFLocalBackend(trained.eval(), tokenizer)
    plain = HFLocalBackend(*tiny_chat_model(seed=0))
    [served], [expected], [untrained] = [
        await b.generate(user("Tell me a story."), GREEDY) for b in (backend, reference, plain)
    ]
    assert served.text == expected.text != untrained.text
    first = backend.identity()["model"]
    assert first.startswith(f"{base}+{tmp_path / 'adapter'}@")
    _save_adapter(tmp_path / "adapter", seed=2)  # retrained in place: a new model for the cache
    again = HFLocalBackend.from_config(cfg)
    assert again.identity()["model"] != first
    for b in (backend, reference, plain, again):
        await b.aclose()


def test_from_config_refuses_a_folder_without_an_adapter(tmp_path):
    from collabrl.config import ConfigError

    base = save_tiny_chat_model(tmp_path / "tiny")
    cfg = HFLocalBackendConfig(kind="hf_local", model=str(base), adapter=tmp_path / "missing")
    with pytest.raises(ConfigError, match="missing is not an adapter folder"):
        HFLocalBackend.from_config(cfg)
