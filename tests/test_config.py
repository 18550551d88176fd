"""Config loading: YAML, dotted overrides, and errors that name the field."""

import pytest

from collabrl.config import ConfigError, apply_override, load_config

YAML = """
roles:
  user:
    kind: openai
    model: gpt-4o-mini
    max_concurrency: 8
  policy:
    kind: scripted
    replies: ["hi"]
cache:
  enabled: false
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(YAML)
    return path


def test_loads_roles_and_defaults(config_file):
    cfg = load_config(config_file)
    assert cfg.role("user").kind == "openai"
    assert cfg.role("user").max_concurrency == 8
    assert cfg.role("user").api_key_env == "OPENAI_API_KEY"
    assert cfg.role("policy").replies == ["hi"]
    assert cfg.cache.enabled is False


def test_overrides_are_typed_and_nested(config_file):
    cfg = load_config(
        config_file,
        [
            "roles.user.max_concurrency=3",
            "roles.user.retry.deadline_s=5.5",
            "cache.enabled=true",
            "roles.judge.kind=scripted",
        ],
    )
    assert cfg.role("user").max_concurrency == 3
    assert cfg.role("user").retry.deadline_s == 5.5
    assert cfg.cache.enabled is True
    assert cfg.role("judge").kind == "scripted"


def test_error_names_the_field_without_union_tag(config_file):
    with pytest.raises(ConfigError) as info:
        load_config(config_file, ["roles.user.max_concurrency=0"])
    assert "roles.user.max_concurrency" in str(info.value)
    assert "openai" not in str(info.value).split(":")[1]


def test_unknown_keys_and_kinds_rejected(config_file):
    with pytest.raises(ConfigError, match="roles.user.temprature"):
        load_config(config_file, ["roles.user.temprature=1"])
    with pytest.raises(ConfigError, match="roles.user"):
        load_config(config_file, ["roles.user.kind=nonsense"])


def test_missing_role_message_lists_defined_roles(config_file):
    cfg = load_config(config_file)
    with pytest.raises(ConfigError, match="no role 'judge'.*policy, user"):
        cfg.role("judge")


@pytest.mark.parametrize("bad", ["novalue", "=3", "roles.user.model.x=1"])
def test_bad_override_forms(config_file, bad):
    with pytest.raises(ConfigError, match="override"):
        load_config(config_file, [bad])


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_apply_override_creates_sections():
    data = {}
    apply_override(data, "a.b.c=[1, 2]")
    assert data == {"a": {"b": {"c": [1, 2]}}}


def test_train_report_to_names_where_it_moved(config_file):
    with pytest.raises(ConfigError, match=r"train.report_to moved to tracking.report_to"):
        load_config(config_file, ["train.report_to=[tensorboard]"])
    assert load_config(
        config_file, ["tracking.report_to=[tensorboard]"]
    ).train.tracking.report_to == ["tensorboard"]


@pytest.mark.parametrize(
    "section, old",
    [("online_dpo", "samples_per_prefix"), ("grpo", "num_generations")],
)
def test_old_names_of_k_name_the_new_key(config_file, section, old):
    """k is ``candidates`` in every section; a config written before the rename says so."""
    renamed = rf"train.{section}.{old} was renamed to train.{section}.candidates"
    with pytest.raises(ConfigError, match=renamed):
        load_config(config_file, [f"train.{section}.{old}=5"])
    loaded = load_config(config_file, [f"train.{section}.candidates=5"])
    assert getattr(loaded.train, section).candidates == 5


def test_a_task_metric_weight_is_refused_because_eval_ignores_it(tmp_path):
    path = tmp_path / "c.yaml"
    metrics = "  task_metrics:\n    - name: accuracy\n      weight: {}\n    - name: bleu\n"
    path.write_text(YAML + "eval:\n" + metrics.format(2))
    with pytest.raises(ConfigError, match=r"eval\.task_metrics: .*accuracy: eval ignores"):
        load_config(path)
    path.write_text(YAML + "eval:\n" + metrics.format(1.0))  # the default is harmless
    assert [m.name for m in load_config(path).eval.task_metrics] == ["accuracy", "bleu"]
