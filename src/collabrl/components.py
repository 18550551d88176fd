"""Assembling the method's pieces from a config: simulator, assistant, forward sampler, reward.

Commands and the data engine call these instead of wiring backends by hand, so that a role
named in the config is the role used, everywhere. Each role's sampling defaults come from its
``roles.<name>.generation`` settings.
"""

from __future__ import annotations

from collabrl.backends.stack import Roles
from collabrl.config import Config, ConfigError
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.metrics.registry import build_metric
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import ForwardSampler, Policy
from collabrl.simulator import UserSimulator


def build_simulator(config: Config, roles: Roles) -> UserSimulator:
    role = config.user.role
    return UserSimulator(
        roles[role], config.role(role).generation,
        max_reasks=config.user.max_reasks, leak_words=config.user.leak_words,
    )


def build_assistant(config: Config, roles: Roles, role: str | None = None) -> Policy:
    """The assistant role (or ``role``); the configured system prompt goes with the assistant role."""
    role = role or config.assistant.role
    system = config.assistant.system_prompt if role == config.assistant.role else None
    return Policy(roles[role], config.role(role).generation, system_prompt=system)


def build_metrics(config: Config, roles: Roles) -> dict[str, WeightedMetric]:
    extractors: dict[str, ArtifactExtractor] = {}

    def extractor_for(role: str) -> ArtifactExtractor:
        if role not in extractors:
            extractors[role] = ArtifactExtractor(roles[role])
        return extractors[role]

    metrics: dict[str, WeightedMetric] = {}
    for spec in config.reward.metrics:
        if spec.name in metrics:
            raise ConfigError(f"reward.metrics lists {spec.name!r} twice")
        try:
            metric = build_metric(spec.name, spec.options, backends=roles.__getitem__,
                                  extractor_for=extractor_for)
        except ValueError as error:
            raise ConfigError(f"reward.metrics: {error}") from None
        metrics[spec.name] = WeightedMetric(metric, spec.weight)
    return metrics


def build_reward(config: Config, roles: Roles) -> MultiturnReward:
    sampler = ForwardSampler(
        build_simulator(config, roles),
        build_assistant(config, roles, config.reward.future_assistant_role),
        samples=config.reward.samples,
        window=config.reward.window,
    )
    try:
        return MultiturnReward(build_metrics(config, roles), sampler)
    except ValueError as error:
        raise ConfigError(f"reward: {error}") from None
