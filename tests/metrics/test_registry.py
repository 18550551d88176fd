"""The metric registry: names and options from configs to metric objects."""

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.metrics.accuracy import AnswerAccuracy
from collabrl.metrics.base import Metric
from collabrl.metrics.bleu import Bleu, BleuChar
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.metrics.helpfulness import HelpfulnessJudge
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.metrics.registry import METRIC_NAMES, build_metric


class Roles:
    """Backends and one shared extractor per role, recording which roles were asked for."""

    def __init__(self):
        self.backends, self.extractors, self.asked = {}, {}, []

    def backend(self, role):
        self.asked.append(role)
        return self.backends.setdefault(role, ScriptedBackend(name=role))

    def extractor(self, role):
        self.asked.append(f"extractor:{role}")
        return self.extractors.setdefault(role, ArtifactExtractor(self.backend(role)))

    def build(self, name, options=None):
        return build_metric(
            name, options or {}, backends=self.backend, extractor_for=self.extractor
        )


@pytest.mark.parametrize(
    "name, cls",
    [
        ("interactivity", InteractivityJudge),
        ("helpfulness", HelpfulnessJudge),
        ("accuracy", AnswerAccuracy),
        ("bleu", Bleu),
        ("bleu_char", BleuChar),
        ("token_efficiency", TokenEfficiency),
    ],
)
def test_every_name_builds_its_metric_with_defaults(name, cls):
    metric = Roles().build(name)
    assert type(metric) is cls and metric.name == name and isinstance(metric, Metric)
    assert name in METRIC_NAMES


def test_roles_and_options_are_passed_on():
    roles = Roles()
    judge = roles.build("interactivity", {"role": "strict_judge", "max_reasks": 0})
    assert judge.judge.backend is roles.backends["strict_judge"] and judge.judge.max_reasks == 0
    efficiency = roles.build("token_efficiency", {"form": "kilotokens", "lam": 1e-4})
    assert (efficiency.form, efficiency.lam) == ("kilotokens", 1e-4)


def test_task_metrics_share_the_extractor_of_a_role():
    roles = Roles()
    accuracy = roles.build("accuracy", {"extractor_role": "extractor", "judge_role": None})
    bleu = roles.build("bleu", {"extractor_role": "extractor"})
    assert accuracy.extractor is bleu.extractor is roles.extractors["extractor"]
    assert accuracy.judge is None
    assert roles.build("accuracy").judge.backend is roles.backends["judge"]


def test_unknown_names_and_options_are_errors():
    with pytest.raises(ValueError, match="unknown metric 'pass_rat'"):
        Roles().build("pass_rat")
    with pytest.raises(ValueError, match="metric 'bleu': unknown option 'role'"):
        Roles().build("bleu", {"role": "judge"})
    with pytest.raises(ValueError, match="form"):
        Roles().build("token_efficiency", {"form": "linear"})


def test_interactivity_scale_option_reaches_the_judge():
    roles = Roles()
    assert roles.build("interactivity").judge.grades == {"3": 1.0, "2": 0.5, "1": 0.0}
    thirds = roles.build("interactivity", {"scale": "thirds"})
    assert thirds.scale == "thirds" and thirds.judge.grades["1"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="interactivity scale"):
        roles.build("interactivity", {"scale": "0-10"})
