"""Metric names in configs -> metric objects.

Each entry lists the options a metric accepts, with their defaults, and how to build it from
them. Backends are looked up by *role* (``judge`` unless an option says otherwise), and
extractors come from ``extractor_for(role)`` so that the caller can hand every metric of a run
the same ``ArtifactExtractor`` per role, which is what lets accuracy, BLEU and pass rate share
one extraction call per conversation; ``extractor_role: null`` asks for the deterministic
last-reply extractor (``collabrl.metrics.last_reply``) instead. Adding a metric is one entry in
``_METRICS``.
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
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.metrics.helpfulness import HelpfulnessJudge
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.metrics.last_reply import LastReplyExtractor
from collabrl.metrics.pass_rate import PassRate
from collabrl.sandbox.policy import sandbox_for

BackendFor = Callable[[str], Backend]
ExtractorFor = Callable[[str | None], ArtifactExtractor | LastReplyExtractor]


@dataclass(frozen=True)
class _Entry:
    defaults: Mapping[str, Any]
    build: Callable[[dict[str, Any], BackendFor, ExtractorFor], Metric]
    sandboxed: bool = False  # runs model-written code: gets the config's sandbox section too


def _accuracy(o: dict[str, Any], backends: BackendFor, extractor_for: ExtractorFor) -> Metric:
    judge = None if o["judge_role"] is None else backends(o["judge_role"])
    return AnswerAccuracy(extractor_for(o["extractor_role"]), judge, max_reasks=o["max_reasks"])


_METRICS: dict[str, _Entry] = {
    "interactivity": _Entry(
        {"role": "judge", "max_reasks": 2},
        lambda o, b, e: InteractivityJudge(b(o["role"]), max_reasks=o["max_reasks"]),
    ),
    "helpfulness": _Entry(
        {"role": "judge", "max_reasks": 2},
        lambda o, b, e: HelpfulnessJudge(b(o["role"]), max_reasks=o["max_reasks"]),
    ),
    # judge_role: the answer-match judge used when an answer cannot be parsed; null disables it
    "accuracy": _Entry({"extractor_role": "judge", "judge_role": "judge", "max_reasks": 2}, _accuracy),
    "bleu": _Entry({"extractor_role": "judge"}, lambda o, b, e: Bleu(e(o["extractor_role"]))),
    "bleu_char": _Entry(
        {"extractor_role": "judge"}, lambda o, b, e: BleuChar(e(o["extractor_role"]))
    ),
    # its own Sandbox (at most CPU-count runs at once); isolation "auto" picks the best of bwrap >
    # unshare > process that the start-up probe finds strong (collabrl.sandbox.isolation);
    # python: the interpreter with the tests' libraries; the config's `sandbox` section applies
    "pass_rate": _Entry(
        {"extractor_role": "judge", "timeout_s": 10.0, "memory_mb": 1024, "isolation": "auto",
         "python": None},
        lambda o, b, e: PassRate(e(o["extractor_role"]), sandbox_for(o, o["sandbox"])),
        sandboxed=True,
    ),
    "token_efficiency": _Entry(
        {"form": "penalty", "lam": 5e-4},
        lambda o, b, e: TokenEfficiency(form=o["form"], lam=o["lam"]),
    ),
}

METRIC_NAMES = tuple(_METRICS)


def metric_options() -> dict[str, dict[str, Any]]:
    """Every metric's options with their defaults, by metric name (for the config reference)."""
    return {name: dict(entry.defaults) for name, entry in _METRICS.items()}


def build_metric(
    name: str,
    options: Mapping[str, Any],
    *,
    backends: BackendFor,
    extractor_for: ExtractorFor,
    sandbox: SandboxConfig | None = None,
) -> Metric:
    """The metric called ``name``, built with ``options`` over the defaults of its entry (and,
    for a metric that runs code, under the config's ``sandbox`` section)."""
    entry = _METRICS.get(name)
    if entry is None:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRIC_NAMES)}")
    unknown = sorted(set(options) - set(entry.defaults))
    if unknown:
        raise ValueError(
            f"metric {name!r}: unknown option {unknown[0]!r} "
            f"(options: {', '.join(entry.defaults) or 'none'})"
        )
    setting = {"sandbox": sandbox or SandboxConfig()} if entry.sandboxed else {}
    return entry.build({**entry.defaults, **options, **setting}, backends, extractor_for)
