"""Building each role's backend from the config: the model plus its wrappers, in one place.

Order, inside out: the model -> ``LimitedBackend`` (concurrency, requests per minute; shared by
roles bound to the same server, so the server sees one limit) ->
``RetryingBackend`` (a call backing off holds no slot) -> ``BudgetGuard`` (only with a budget:
counts and caps the calls that reach a model) -> ``CachedBackend`` (hits skip limits, retries and
the budget) -> ``MeteredBackend`` (counts what the caller saw). ``Roles`` owns the backends of a
run, the shared cache and the usage meter, and closes them all at the end.

``cache.mode: replay`` needs no model, key or server: API backends are built as usual (they
read their key at call time and connect on the first request, which replay never makes), and
an ``hf_local`` role is not loaded at all: only its cache identity is computed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from collabrl.backends.accounting import MeteredBackend, UsageMeter
from collabrl.backends.base import Backend
from collabrl.backends.cache import CachedBackend, CacheMode, ResponseCache
from collabrl.backends.limits import LimitedBackend
from collabrl.backends.retry import RetryingBackend
from collabrl.budget import Budget
from collabrl.config import BackendConfig, Config, ConfigError, HFLocalBackendConfig
from collabrl.types import Completion, GenerationParams, Message


def build_model_backend(cfg: BackendConfig) -> Backend:
    """The bare backend for ``cfg`` (no wrappers). Heavy libraries are imported only if used."""
    if cfg.kind == "openai":
        from collabrl.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(cfg)
    if cfg.kind == "anthropic":
        from collabrl.backends.anthropic import AnthropicBackend

        return AnthropicBackend(cfg)
    if cfg.kind == "hf_local":
        from collabrl.backends.hf_local import HFLocalBackend

        return HFLocalBackend.from_config(cfg)
    if cfg.kind == "scripted":
        from collabrl.backends.scripted import ScriptedBackend

        return ScriptedBackend.from_config(cfg)
    raise ConfigError(f"unknown backend kind {cfg.kind!r}")


class UnloadedLocalModel:
    """An ``hf_local`` role in replay: the identity ``HFLocalBackend.from_config`` gives the
    model (its config string, plus the adapter's path and content hash), without the weights."""

    def __init__(self, cfg: HFLocalBackendConfig, role: str) -> None:
        name = cfg.model
        if cfg.adapter is not None:
            name = f"{cfg.model}+{cfg.adapter}@{_adapter_fingerprint(cfg, role)}"
        self._identity = {"kind": "hf_local", "model": name}

    def identity(self) -> dict[str, str]:
        return self._identity

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        raise RuntimeError("a replayed local model is never asked")  # the cache answers

    async def aclose(self) -> None:
        return None


def _adapter_fingerprint(cfg: HFLocalBackendConfig, role: str) -> str:
    """The adapter files' hash, as ``collabrl.backends.hf_local`` computes it for its name."""
    adapter = cfg.adapter
    if adapter is None or not adapter.is_dir():
        raise ConfigError(
            f"roles.{role}.adapter: replay needs the folder {adapter} (the hash of "
            "its files is part of the cache key; the base model is not needed)"
        )
    digest = hashlib.sha256()
    for file in sorted(p for p in adapter.iterdir() if p.is_file()):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def replay_model_backend(cfg: BackendConfig, role: str) -> Backend:
    """The model backend of a role in replay: built, but no request will be sent."""
    if isinstance(cfg, HFLocalBackendConfig):
        return UnloadedLocalModel(cfg, role)
    return build_model_backend(cfg)


def wrap_backend(
    limited: Backend,
    cfg: BackendConfig,
    *,
    role: str,
    meter: UsageMeter,
    cache: ResponseCache | None,
    cache_mode: CacheMode = "readwrite",
    budget: Budget | None = None,
) -> MeteredBackend:
    """An already rate-limited backend with retries, budget, cache and accounting for one role."""
    usage = meter.role(role, cfg.price)

    def count_retry(error, delay) -> None:
        usage.retries += 1

    backend: Backend = RetryingBackend(limited, cfg.retry, on_retry=count_retry)
    if budget is not None:
        backend = budget.guard(backend, role, cfg.price)
    if cache is not None:
        backend = CachedBackend(
            backend, cache, on_hit=usage.record_cache_hit, mode=cache_mode, role=role
        )
    return MeteredBackend(backend, usage)


def _server_key(cfg: BackendConfig) -> str:
    """Configs with the same key talk to the same model and share one backend and its limits."""
    return cfg.model_dump_json(exclude={"generation", "price", "retry"})


class Roles:
    """The role -> backend bindings of one run. Use as ``async with Roles(config) as roles``."""

    def __init__(
        self,
        config: Config,
        *,
        use_cache: bool = True,
        models: Mapping[str, Backend] | None = None,
        meter: UsageMeter | None = None,
        budget: Budget | None = None,
    ) -> None:
        """``use_cache=False`` turns the cache off whatever ``config.cache.mode`` says.
        ``models`` supplies ready model backends by role (e.g. a live policy in training).
        Those roles are never cached: their weights may change between calls. ``meter`` adds
        this run's usage to an existing meter (several stages of one job). ``budget`` caps the
        calls of every role (``collabrl.budget``); without it nothing is capped."""
        self.config = config
        self.meter = meter if meter is not None else UsageMeter()
        self.budget = budget
        self.cache_mode = config.cache.mode if use_cache else "off"
        self.cache = None
        if self.cache_mode != "off":
            replay = self.cache_mode == "replay"
            self.cache = ResponseCache(config.cache.path, read_only=replay)
        self._given = dict(models or {})
        self._shared: dict[str, LimitedBackend] = {}
        self._backends: dict[str, MeteredBackend] = {}

    def __getitem__(self, role: str) -> MeteredBackend:
        if role not in self._backends:
            cfg = self.config.role(role)
            cache = None if role in self._given else self.cache
            self._backends[role] = wrap_backend(
                self._limited(role, cfg),
                cfg,
                role=role,
                meter=self.meter,
                cache=cache,
                cache_mode=self.cache_mode,
                budget=self.budget,
            )
        return self._backends[role]

    def _limited(self, role: str, cfg: BackendConfig) -> LimitedBackend:
        """The role's model behind its limits; roles bound to the same server share both."""
        if role in self._given:
            key = f"given:{role}"
            self._shared[key] = LimitedBackend(
                self._given[role], cfg.max_concurrency, cfg.requests_per_minute
            )
            return self._shared[key]
        key = _server_key(cfg)
        if key not in self._shared:
            replay = self.cache_mode == "replay"
            model = replay_model_backend(cfg, role) if replay else build_model_backend(cfg)
            self._shared[key] = LimitedBackend(model, cfg.max_concurrency, cfg.requests_per_minute)
        return self._shared[key]

    async def aclose(self) -> None:
        for backend in self._shared.values():
            await backend.aclose()
        if self.cache is not None:
            self.cache.close()

    async def __aenter__(self) -> Roles:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
