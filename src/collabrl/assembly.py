"""Assembling the method's pieces from a config: simulator, assistant, forward sampler, reward.

Commands and the data engine call these instead of wiring backends by hand, so that a role
named in the config is the role used, everywhere. Each role's sampling defaults come from its
``roles.<name>.generation`` settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collabrl.adaptive import AdaptiveSampling
from collabrl.backends.base import Backend
from collabrl.backends.settings import ConfiguredSettings
from collabrl.backends.stack import Roles
from collabrl.config import Config, ConfigError, MetricSpec
from collabrl.metrics.base import Metric
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.metrics.last_reply import LastReplyExtractor
from collabrl.metrics.registry import build_metric
from collabrl.personas import PersonaSet, load_personas
from collabrl.plugins import PluginError, resolve
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.rule_user import RuleUser
from collabrl.simulator import UserSimulator


def _llm_user(config: Config, roles: Roles) -> UserSimulator:
    role = config.user.role
    return UserSimulator(
        roles[role],
        config.role(role).generation,
        max_reasks=config.user.max_reasks,
        leak_words=config.user.leak_words,
        reply_format=config.user.reply_format,
        cut_messages=config.user.cut_messages,
    )


BUILTIN_USER_KINDS: dict[str, Callable[[Config, Roles], Any]] = {
    "llm": _llm_user,
    "rule": lambda config, roles: RuleUser(),
}


def build_simulator(config: Config, roles: Roles) -> UserSimulator | RuleUser:
    """The user of ``user.kind``: a built-in kind, or user code called as ``(config, roles)``
    that returns an object with ``UserSimulator``'s ``next_turn(task, conversation,
    sample_index) -> UserTurn``."""
    try:
        factory = resolve("users", config.user.kind, BUILTIN_USER_KINDS)
    except PluginError as error:
        raise ConfigError(f"user.kind: {error}") from None
    if not callable(factory):
        raise ConfigError(f"user.kind {config.user.kind!r}: not callable as (config, roles)")
    return factory(config, roles)


def build_personas(config: Config) -> PersonaSet | None:
    """The persona set of ``user.personas`` (None: no personas). Whatever kind of user plays
    the conversation, the persona is sampled and recorded; the LLM simulator also reads it."""
    return load_personas(config.user.personas)


def build_assistant(config: Config, roles: Roles, role: str | None = None) -> Assistant:
    """The assistant role (or ``role``); the configured system prompt goes with the assistant
    role."""
    role = role or config.assistant.role
    system = config.assistant.system_prompt if role == config.assistant.role else None
    return Assistant(roles[role], config.role(role).generation, system_prompt=system)


def metric_backend(roles: Roles, role: str) -> Backend:
    """The backend judges and extractors use: their own sampling defaults, except the fields the
    role's ``generation`` sets explicitly."""
    return ConfiguredSettings(roles[role], roles.config.role(role).generation)


def metric_builder(roles: Roles) -> Callable[[MetricSpec, str], Metric]:
    """``build(spec, where) -> Metric`` for the metrics of one run: one artifact extractor per
    role is shared by all of them, so a conversation is extracted once; errors name ``where``."""
    extractors: dict[str | None, ArtifactExtractor | LastReplyExtractor] = {}

    def backend_for(role: str) -> Backend:
        return metric_backend(roles, role)

    def extractor_for(role: str | None) -> ArtifactExtractor | LastReplyExtractor:
        """``role``'s LLM extractor; None: the deterministic last-reply extractor."""
        if role not in extractors:
            extractors[role] = (
                LastReplyExtractor() if role is None else ArtifactExtractor(backend_for(role))
            )
        return extractors[role]

    def build(spec: MetricSpec, where: str) -> Metric:
        try:
            return build_metric(
                spec.name,
                spec.options,
                backends=backend_for,
                extractor_for=extractor_for,
                sandbox=roles.config.sandbox,
            )
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None

    return build


def build_metrics(config: Config, roles: Roles) -> dict[str, WeightedMetric]:
    build = metric_builder(roles)
    metrics: dict[str, WeightedMetric] = {}
    for spec in config.reward.metrics:
        metric = build(
            spec, "reward.metrics"
        )  # keyed by its own name: a plugin's, not its reference
        if metric.name in metrics:
            raise ConfigError(f"reward.metrics lists {metric.name!r} twice")
        metrics[metric.name] = WeightedMetric(metric, spec.weight)
    return metrics


def adaptive_sampling(config: Config) -> AdaptiveSampling | None:
    """The racing rule of ``reward.adaptive`` (None when off); pairs use the export's min_gap."""
    reward = config.reward
    if reward.adaptive == "off" or reward.reward_range is None:
        return None
    return AdaptiveSampling(
        mode=reward.adaptive,
        samples_min=reward.samples_min,
        samples_max=reward.samples_max or reward.samples,
        confidence=reward.confidence,
        reward_range=reward.reward_range,
        min_gap=config.export.min_gap,
        target_stderr=reward.target_stderr,
    )


def build_reward(config: Config, roles: Roles) -> MultiturnReward:
    sampler = ForwardSampler(
        build_simulator(config, roles),
        build_assistant(config, roles, config.reward.future_assistant_role),
        samples=config.reward.samples,
        window=config.reward.window,
    )
    metrics = build_metrics(config, roles)  # its errors already name reward.metrics
    try:
        return MultiturnReward(
            metrics,
            sampler,
            cut_futures=config.reward.cut_futures,
            adaptive=adaptive_sampling(config),
        )
    except ValueError as error:
        raise ConfigError(f"reward: {error}") from None
