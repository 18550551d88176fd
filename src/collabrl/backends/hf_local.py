"""A local transformers model as a Backend, with concurrent calls batched into one ``generate``.

The pipeline issues many independent ``generate`` calls at once (candidates, sampled futures,
judges). A local model decodes 16 rows for little more than the price of one, so the calls are
queued in an :class:`~collabrl.backends.batching.AsyncBatcher` and decoded together on one
worker thread, while the event loop keeps running. The model may be loaded from a config
(a folder, a hub id, or the offline alias ``smollm2-135m-instruct``) or passed in already
loaded, including a PEFT-wrapped model, so training code can sample from its live weights.

How a batch is built and decoded:
- each call becomes ``n`` rows (one per sample); a call with more samples than
  ``max_batch_size`` is split into several batch items;
- the chat template is applied with ``add_generation_prompt=True``; rows are LEFT padded;
- ``model.generate`` runs in greedy mode and :class:`_RowSampler` picks every row's token with
  that row's own temperature (0 = greedy), top_p and ``torch.Generator``. So rows with any
  sampling settings can share a batch, and a seeded sample (seeded with
  ``params.sample_seed(i)``) draws the same random numbers whatever else is in its batch
  (its text can still differ where batch shapes change the logits' last bits, e.g. in bf16);
- only ``max_tokens`` separates calls: they share a batch when their ``max_tokens`` lie in the
  same power-of-two bucket, so a short reply is not held back by a long one. A batch decodes up
  to its largest ``max_tokens``; a row that reaches its own limit is ended there ("length");
- a stop string ends its row early (checked after each token) and the text is cut before it.

Usage: the prompt's tokens are counted on the first sample of a call; completion tokens are
the reply's tokens, excluding the end-of-turn token. The model is put in eval mode for the
duration of a batch (a live training model gets its mode back afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from collabrl.backends.batching import AsyncBatcher
from collabrl.backends.errors import BackendError, RequestRejectedError, TransientError
from collabrl.config import ConfigError, HFLocalBackendConfig
from collabrl.types import Completion, FinishReason, GenerationParams, Message, Usage


@dataclass(frozen=True)
class _Request:
    """One batch item: the samples ``samples`` of one ``generate`` call."""

    messages: tuple[Message, ...]
    params: GenerationParams
    samples: range


@dataclass(frozen=True)
class _Row:
    prompt: list[int]
    params: GenerationParams
    sample: int  # index of the sample within its call


@dataclass(frozen=True)
class _Output:
    tokens: list[int]  # the reply's tokens, without the end-of-turn token
    text: str
    finish_reason: FinishReason


class HFLocalBackend:
    """A transformers causal LM behind the Backend protocol; concurrent calls share batches."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 20.0,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model, "name_or_path", "") or type(model).__name__
        self.max_batch_size = max_batch_size
        self.eos_token_ids = _eos_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]
        self._context = getattr(model.config, "max_position_embeddings", None)
        self._batcher: AsyncBatcher[_Request, list[Completion]] = AsyncBatcher(
            self._run_batch,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_ms / 1000,
            key=lambda request: request.params.max_tokens.bit_length(),
            rows=lambda request: len(request.samples),
            thread_name="collabrl-hf-local",
        )

    @classmethod
    def from_config(cls, cfg: HFLocalBackendConfig) -> HFLocalBackend:
        """Load ``cfg.model`` (a folder, a hub id, or ``smollm2-135m-instruct``)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from collabrl.models import resolve_model

        path = resolve_model(cfg.model)
        device = _pick_device(cfg.device)
        dtype = _pick_dtype(cfg.dtype, device)
        remote = cfg.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=remote)
        name = cfg.model
        if cfg.adapter is not None:
            model = _with_adapter(model, cfg.adapter)
            name = f"{cfg.model}+{cfg.adapter}@{_fingerprint(cfg.adapter)}"
        model = model.to(device).eval()
        return cls(
            model,
            tokenizer,
            max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.max_wait_ms,
            name=name,
        )

    def identity(self) -> dict[str, str]:
        return {"kind": "hf_local", "model": self.name}

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        step = self.max_batch_size
        chunks = [range(i, min(i + step, params.n)) for i in range(0, params.n, step)]
        parts = await asyncio.gather(
            *(self._batcher.submit(_Request(tuple(messages), params, c)) for c in chunks)
        )
        return [completion for part in parts for completion in part]

    async def aclose(self) -> None:
        await self._batcher.aclose()

    def __repr__(self) -> str:
        return f"HFLocalBackend({self.name!r})"

    # --- everything below runs on the batcher's worker thread ---------------------------

    def _run_batch(self, requests: list[_Request]) -> list[list[Completion] | BaseException]:
        """Encode each request (a bad one fails alone), decode all rows, build completions."""
        prompts = [self._encode(r.messages) for r in requests]
        rows = [
            _Row(prompt, r.params, sample)
            for r, prompt in zip(requests, prompts)
            if not isinstance(prompt, BaseException)
            for sample in r.samples
        ]
        outputs = iter(self._decode_rows(rows) if rows else [])
        results: list[list[Completion] | BaseException] = []
        for r, prompt in zip(requests, prompts):
            if isinstance(prompt, BaseException):
                results.append(prompt)
                continue
            results.append([_completion(next(outputs), len(prompt), s) for s in r.samples])
        return results

    def _encode(self, messages: tuple[Message, ...]) -> list[int] | BackendError:
        try:
            text = self.tokenizer.apply_chat_template(
                [m.to_openai() for m in messages], add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja errors: e.g. a template that refuses a system role
            return RequestRejectedError(f"{self.name}: chat template failed: {exc}")
        prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self._context is not None and len(prompt) >= self._context:
            return RequestRejectedError(
                f"{self.name}: the prompt has {len(prompt)} tokens; the model's context "
                f"is {self._context} tokens"
            )
        return prompt

    def _decode_rows(self, rows: list[_Row]) -> list[_Output]:
        """One ``model.generate`` over all rows; model failures become BackendErrors."""
        try:
            return self._generate(rows)
        except torch.cuda.OutOfMemoryError as exc:
            raise TransientError(f"{self.name}: out of memory for {len(rows)} rows") from exc
        except Exception as exc:
            raise BackendError(f"{self.name}: generation failed: {exc!r}") from exc

    def _generate(self, rows: list[_Row]) -> list[_Output]:
        device = _model_device(self.model)
        width = max(len(row.prompt) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.prompt) :] = torch.tensor(row.prompt)
            attention_mask[i, width - len(row.prompt) :] = 1
        limits = [self._limit(row) for row in rows]
        sampler = _RowSampler(rows, limits, width, self.eos_token_ids, self.tokenizer, device)
        config = GenerationConfig(
            max_new_tokens=max(limits),
            do_sample=False,
            num_beams=1,
            # set explicitly so the model's own generation_config (which fills every unset
            # field) adds no penalties or warnings; _RowSampler does all the sampling
            temperature=1.0,
            top_k=50,
            top_p=1.0,
            repetition_penalty=1.0,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        with torch.inference_mode(), _eval_mode(self.model):
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        new_tokens = output[:, width:].tolist()
        return [self._output(t[:n], row.params.stop) for t, n, row in zip(new_tokens, limits, rows)]

    def _limit(self, row: _Row) -> int:
        """The row's token budget: ``max_tokens``, cut to what the context has room for."""
        if self._context is None:
            return row.params.max_tokens
        return max(1, min(row.params.max_tokens, self._context - len(row.prompt)))

    def _output(self, tokens: list[int], stop: tuple[str, ...]) -> _Output:
        ended = next((i for i, t in enumerate(tokens) if t in self.eos_token_ids), None)
        reply = tokens if ended is None else tokens[:ended]
        text = self.tokenizer.decode(reply, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=None)
        if cut is not None:
            return _Output(reply, text[:cut], "stop")
        return _Output(reply, text, "length" if ended is None else "stop")


class _RowSampler(LogitsProcessor):
    """Chooses each row's next token with that row's own settings, for a greedy ``generate``.

    ``generate`` samples every row with one temperature/top_p and one random stream. This
    processor instead samples per row (each with its own ``torch.Generator``), forces the
    end-of-turn token where a row hit its token limit or a stop string, and leaves exactly one
    finite score per row, which greedy search then takes.
    """

    def __init__(self, rows, limits, prompt_width, eos_ids, tokenizer, device) -> None:
        self.prompt_width = prompt_width
        self.eos_id = eos_ids[0]
        self.eos_ids = torch.tensor(eos_ids, device=device)
        self.tokenizer = tokenizer
        self.limits = torch.tensor(limits, device=device)
        self.sampled = [i for i, row in enumerate(rows) if row.params.temperature > 0]
        self.temperature = torch.tensor(
            [[rows[i].params.temperature] for i in self.sampled], device=device
        )
        self.top_p = torch.tensor([[rows[i].params.top_p] for i in self.sampled], device=device)
        self.nucleus = any(rows[i].params.top_p < 1 for i in self.sampled)
        self.generators = [_generator(rows[i], device) for i in self.sampled]
        self.stops = {i: row.params.stop for i, row in enumerate(rows) if row.params.stop}
        self.stop_tail = 4 * max((len(s) for r in rows for s in r.params.stop), default=0) + 2
        self.stopped = torch.zeros(len(rows), dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_width
        chosen = scores.argmax(dim=-1)
        if self.sampled:
            chosen[self.sampled] = self._sample(scores[self.sampled])
        if self.stops and step > 0:
            self._check_stops(input_ids)
        chosen = torch.where(self.stopped | (self.limits <= step), self.eos_id, chosen)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, chosen[:, None], 0.0)

    def _sample(self, scores: torch.Tensor) -> torch.Tensor:
        logits = scores / self.temperature
        if self.nucleus:
            ordered, order = logits.sort(dim=-1, descending=True)
            probs = ordered.softmax(dim=-1)
            outside = probs.cumsum(dim=-1) - probs >= self.top_p  # the mass before it: p or more
            logits = logits.scatter(1, order, ordered.masked_fill(outside, float("-inf")))
        # inverse-CDF sampling: one uniform per row from its own generator, then one batched
        # search (a per-row torch.multinomial costs ~4 ms per step on a 49k vocabulary)
        cdf = logits.softmax(dim=-1).cumsum(dim=-1, dtype=torch.float64)
        uniforms = torch.cat([torch.rand(1, generator=g, device=g.device) for g in self.generators])
        targets = uniforms.to(cdf.dtype)[:, None] * cdf[:, -1:]
        picks = torch.searchsorted(cdf, targets, right=True).squeeze(1)
        return picks.clamp_(max=cdf.shape[-1] - 1)

    def _check_stops(self, input_ids: torch.Tensor) -> None:
        """Mark rows whose recent text contains one of their stop strings."""
        ended = torch.isin(input_ids[:, -1], self.eos_ids)
        start = max(self.prompt_width, input_ids.shape[1] - self.stop_tail)
        for i, stop in self.stops.items():
            if self.stopped[i] or ended[i]:
                continue
            tail = self.tokenizer.decode(input_ids[i, start:], skip_special_tokens=True)
            if any(s in tail for s in stop):
                self.stopped[i] = True


def _completion(output: _Output, prompt_tokens: int, sample: int) -> Completion:
    usage = Usage(
        prompt_tokens=prompt_tokens if sample == 0 else 0, completion_tokens=len(output.tokens)
    )
    return Completion(text=output.text, finish_reason=output.finish_reason, usage=usage)


def _generator(row: _Row, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    seed = row.params.sample_seed(row.sample)
    if seed is None:
        generator.seed()  # a fresh non-deterministic seed
    else:
        generator.manual_seed(seed)
    return generator


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn tokens: the generation config's, then the tokenizer's EOS."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in [*ids, tokenizer.eos_token_id] if i is not None]
    if not ids:
        raise ValueError("the model has no EOS token (generation_config or tokenizer)")
    return list(dict.fromkeys(ids))


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _pick_dtype(dtype: str, device: str) -> torch.dtype:
    """Resolve "auto": bf16 on CUDA (fp16 without bf16) and on CPUs with native bf16."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32


def _cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively (~2x fp32 for small models)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _with_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the LoRA ``adapter`` applied. Not merged: merging into bf16 weights rounds
    away small updates, so the served model would differ from the trained one."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(
            f"adapter {adapter} is not an adapter folder (no adapter_config.json); "
            f"train one first, e.g. collabrl train dpo"
        )
    return PeftModel.from_pretrained(model, str(adapter))


def _fingerprint(adapter: Path) -> str:
    """A short hash of the adapter's files: a retrained adapter at the same path is a new model
    for the response cache."""
    digest = hashlib.sha256()
    for file in sorted(p for p in adapter.iterdir() if p.is_file()):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]
