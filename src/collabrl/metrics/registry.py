"""Metric names in configs -> metric objects.

Each entry lists the options a metric accepts, with their defaults, and how to build it from
them. Backends are looked up by *role* (``judge`` unless an option says otherwise), and
extractors come from ``extractor_for(role)`` so that the caller can hand every metric of a run
the same ``ArtifactExtractor`` per role, which is what lets accuracy, BLEU and pass rate share
one extraction call per conversation; ``extractor_role: null`` asks for the deterministic
last-reply extractor (``collabrl.metrics.last_reply``) instead. Adding a metric is one entry in
``_METRICS``.

A name that is not built in is a plugin (``collabrl.plugins``): a ``module:attribute`` reference
or an entry point in the group ``collabrl.metrics``. It names a factory (a class or a function)
called as ``factory(options, tools)`` with the spec's options (over its ``defaults`` attribute,
when it has one, which then also rejects unknown options as built-ins do) and a ``MetricTools``,
and returns a ``Metric`` (``collabrl.metrics.base``). It is weighted, cached, unscored and
reported exactly like a built-in. Judges from user code need no factory: the built-in
``llm_judge`` takes a prompt and a grade scale (``collabrl.metrics.prompt_judge``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collabrl.backends.base import Backend
from collabrl.config import SandboxConfig
from collabrl.metrics.accuracy import AnswerAccuracy
from collabrl.metrics.base import Metric
from collabrl.metrics.bleu import Bleu, BleuChar
from collabrl.metrics.clarification import DetailSuccess
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.metrics.helpfulness import HelpfulnessJudge
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.metrics.last_reply import LastReplyExtractor
from collabrl.metrics.pass_rate import PassRate
from collabrl.metrics.prompt_judge import PromptJudge, judge_prompt
from collabrl.metrics.turn_cost import TurnCost
from collabrl.plugins import resolve
from collabrl.sandbox.policy import sandbox_for

BackendFor = Callable[[str], Backend]
ExtractorFor = Callable[[str | None], ArtifactExtractor | LastReplyExtractor]


@dataclass(frozen=True)
class MetricTools:
    """What a metric plugin is given besides its options: the run's backends and extractors by
    role (the same objects built-in metrics get, so calls are cached and extraction is shared)
    and the config's sandbox settings, for a metric that runs model-written code."""

    backend_for: BackendFor
    extractor_for: ExtractorFor
    sandbox: SandboxConfig


@dataclass(frozen=True)
class _Entry:
    defaults: Mapping[str, Any] | None  # None: a plugin that takes any options
    build: Callable[[dict[str, Any], BackendFor, ExtractorFor], Metric]
    sandboxed: bool = False  # runs model-written code: gets the config's sandbox section too


def _accuracy(o: dict[str, Any], backends: BackendFor, extractor_for: ExtractorFor) -> Metric:
    judge = None if o["judge_role"] is None else backends(o["judge_role"])
    return AnswerAccuracy(extractor_for(o["extractor_role"]), judge, max_reasks=o["max_reasks"])


_METRICS: dict[str, _Entry] = {
    # scale: grade 3/2/1 -> unit 1/0.5/0, thirds S/3 (the original code), itr 2(S-2.5)
    "interactivity": _Entry(
        {"role": "judge", "max_reasks": 2, "scale": "unit"},
        lambda o, b, e: InteractivityJudge(
            b(o["role"]), max_reasks=o["max_reasks"], scale=o["scale"]
        ),
    ),
    "helpfulness": _Entry(
        {"role": "judge", "max_reasks": 2},
        lambda o, b, e: HelpfulnessJudge(b(o["role"]), max_reasks=o["max_reasks"]),
    ),
    # a judge from user code: judge (a name or module:attribute) or prompt (a file) + grades
    "llm_judge": _Entry(
        {
            "judge": None,
            "prompt": None,
            "grades": None,
            "name": "llm_judge",
            "role": "judge",
            "max_reasks": 2,
        },
        lambda o, b, e: PromptJudge(
            b(o["role"]), judge_prompt(o), name=o["name"], max_reasks=o["max_reasks"]
        ),
    ),
    # judge_role: the answer-match judge used when an answer cannot be parsed; null disables it
    "accuracy": _Entry(
        {"extractor_role": "judge", "judge_role": "judge", "max_reasks": 2}, _accuracy
    ),
    "bleu": _Entry({"extractor_role": "judge"}, lambda o, b, e: Bleu(e(o["extractor_role"]))),
    "bleu_char": _Entry(
        {"extractor_role": "judge"}, lambda o, b, e: BleuChar(e(o["extractor_role"]))
    ),
    # its own Sandbox (at most CPU-count runs at once); isolation "auto" picks the best of bwrap >
    # unshare > process that the start-up probe finds strong (collabrl.sandbox.isolation);
    # python: the interpreter with the tests' libraries; the config's `sandbox` section applies
    "pass_rate": _Entry(
        {
            "extractor_role": "judge",
            "timeout_s": 10.0,
            "memory_mb": 1024,
            "isolation": "auto",
            "python": None,
        },
        lambda o, b, e: PassRate(e(o["extractor_role"]), sandbox_for(o, o["sandbox"])),
        sandboxed=True,
    ),
    "token_efficiency": _Entry(
        {"form": "penalty", "lam": 5e-4},
        lambda o, b, e: TokenEfficiency(form=o["form"], lam=o["lam"]),
    ),
    # tasks whose user holds back a detail (clarify-chat): the final reply uses it, 1 or 0
    "detail_success": _Entry({}, lambda o, b, e: DetailSuccess()),
    "turn_cost": _Entry({"cost": 0.05}, lambda o, b, e: TurnCost(cost=o["cost"])),
}

METRIC_NAMES = tuple(_METRICS)


def metric_options() -> dict[str, dict[str, Any]]:
    """Every built-in metric's options with their defaults, by name (for the config reference)."""
    return {name: dict(entry.defaults or {}) for name, entry in _METRICS.items()}


def _plugin(name: str, factory: object, sandbox: SandboxConfig) -> _Entry:
    """The entry of a metric plugin; failures while building it name the plugin."""
    if not callable(factory):
        raise ValueError(
            f"metric {name!r} is a {type(factory).__name__}, not a factory called "
            f"as (options, tools)"
        )

    def build(options: dict[str, Any], backends: BackendFor, extractor_for: ExtractorFor) -> Metric:
        try:
            return factory(options, MetricTools(backends, extractor_for, sandbox))
        except Exception as error:  # noqa: BLE001 - any failure of user code, named
            raise ValueError(
                f"metric {name!r}: building it failed: {type(error).__name__}: {error}"
            ) from None

    return _Entry(getattr(factory, "defaults", None), build)


def build_metric(
    name: str,
    options: Mapping[str, Any],
    *,
    backends: BackendFor,
    extractor_for: ExtractorFor,
    sandbox: SandboxConfig | None = None,
) -> Metric:
    """The metric called ``name`` (built in or a plugin), built with ``options`` over the
    defaults of its entry (and, for a metric that runs code, under the config's ``sandbox``
    section)."""
    sandbox = sandbox or SandboxConfig()
    found = resolve("metrics", name, _METRICS)
    entry = found if isinstance(found, _Entry) else _plugin(name, found, sandbox)
    unknown = [] if entry.defaults is None else sorted(set(options) - set(entry.defaults))
    if unknown:
        raise ValueError(
            f"metric {name!r}: unknown option {unknown[0]!r} "
            f"(options: {', '.join(entry.defaults or {}) or 'none'})"
        )
    setting = {"sandbox": sandbox} if entry.sandboxed else {}
    metric = entry.build({**(entry.defaults or {}), **options, **setting}, backends, extractor_for)
    if not isinstance(metric, Metric):
        raise ValueError(
            f"metric {name!r} built a {type(metric).__name__}, not a Metric "
            f"(a `name` and an async __call__(conversation, task) -> Score)"
        )
    return metric
