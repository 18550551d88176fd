"""Every shipped config loads, and its first line is the command that launches it."""

from pathlib import Path

import pytest

from collabrl.config import load_config
from collabrl.metrics.registry import METRIC_NAMES
from collabrl.study.config import load_study_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_exist():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_starts_with_its_launch_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "collabrl " in first, first
    assert f"--config configs/{path.name}" in first
    if path.name == "study.yaml":  # the user-study app has its own config model
        assert load_study_config(path).systems
        return
    config = load_config(path)
    assert config.roles, "a shipped config binds at least one role"
    for spec in config.reward.metrics:
        assert spec.name in METRIC_NAMES, f"{path.name}: unknown metric {spec.name}"


ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


def test_every_file_under_configs_is_covered():
    """A new file under configs/ must be one of the kinds tested here (or get its own test)."""
    covered = set(CONFIGS) | set(ACCELERATE)
    found = {p for p in (ROOT / "configs").rglob("*") if p.is_file()}
    assert found - covered == set(), "files under configs/ that no test loads"
    assert ACCELERATE


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_parses_and_launches_a_shipped_config(path):
    """accelerate's own YAML: the keys it needs, accepted by its ClusterConfig when installed."""
    import yaml

    data = yaml.safe_load(path.read_text())
    for key in ("compute_environment", "distributed_type", "num_processes", "mixed_precision"):
        assert key in data, f"{path.name}: no {key}"
    assert data["compute_environment"] == "LOCAL_MACHINE"
    assert isinstance(data["num_processes"], int) and data["num_processes"] >= 1
    if data["distributed_type"] == "DEEPSPEED":
        assert data["deepspeed_config"]["zero_stage"] in (2, 3)
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file configs/accelerate/{path.name} ")
    shipped = first.split("--config ")[-1].split()[0]
    assert (ROOT / shipped).is_file(), first
    config_args = pytest.importorskip("accelerate.commands.config.config_args")
    cluster = config_args.ClusterConfig.from_yaml_file(str(path))  # unknown keys are an error
    assert cluster.num_processes == data["num_processes"]


def test_multi_gpu_lines_name_shipped_files():
    """Every `accelerate launch` line in a config's header names files that exist, and a
    one-device recipe (online DPO, PPO) never has one."""
    for path in CONFIGS:
        for line in path.read_text().splitlines():
            if not line.startswith("#") or "accelerate launch" not in line:
                continue
            accelerate_file = line.split("--config_file ")[1].split()[0]
            assert (ROOT / accelerate_file).is_file(), f"{path.name}: {line}"
            assert " train online-dpo " not in line and " train ppo " not in line, line


def _stop(*args, **kwargs):
    raise _Reached


class _Reached(Exception):
    """The recipe got past its config checks to the first step that reads data or a model."""


def test_online_dpo_config_passes_the_recipes_checks(monkeypatch):
    pytest.importorskip("trl")
    from collabrl.train import online_dpo

    config = load_config(ROOT / "configs" / "train-online-dpo.yaml")
    monkeypatch.setattr(online_dpo, "load_prefixes", _stop)
    with pytest.raises(_Reached):
        online_dpo.train(config)
    assert config.roles["policy"].kind == "hf_local"
    assert config.roles["policy"].model == config.train.model  # the live policy's settings
    tc = config.train
    assert tc.per_device_batch_size * tc.gradient_accumulation_steps == 32  # the paper's batch


def test_grpo_config_passes_the_recipes_checks_and_trls(monkeypatch):
    pytest.importorskip("trl")
    import trl

    from collabrl.train import grpo

    config = load_config(ROOT / "configs" / "train-grpo.yaml")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(grpo, "load_prefixes", _stop)
    with pytest.raises(_Reached):
        grpo.train(config)
    built = {}

    def trainer(**kwargs):
        built.update(kwargs)
        return kwargs

    monkeypatch.setattr(trl, "GRPOTrainer", trainer)  # GRPOConfig itself is really built
    grpo.build_trainer(config, None, None, None, lambda **_: [])
    args = built["args"]
    assert (args.num_generations, args.beta, args.loss_type) == (8, 0.0, "dapo")
    assert args.generation_batch_size % args.num_generations == 0
    assert config.roles["policy"].model == config.train.model


def test_ppo_config_passes_the_recipes_checks(monkeypatch):
    pytest.importorskip("trl")
    from collabrl.train import ppo

    config = load_config(ROOT / "configs" / "train-ppo.yaml")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(ppo, "load_prefixes", lambda *a: [])
    monkeypatch.setattr(ppo, "find_resumable", lambda *a: None)
    monkeypatch.setattr(ppo, "load_policy", _stop)  # after ActorCritic.load's LoRA check
    with pytest.raises(_Reached):
        ppo.train(config)
    assert config.roles["policy"].model == config.train.model
    assert config.train.ppo.rollouts == 64  # the paper's batch


DEEPSPEED = [p for p in ACCELERATE if "deepspeed" in p.name]


def _deepspeed_launch(path: Path, monkeypatch):
    """(launcher arguments, DeepSpeedPlugin) as ``accelerate launch --config_file path`` makes
    them: the launcher's own parsing, its environment for the processes, the plugin built from it."""
    launch = pytest.importorskip("accelerate.commands.launch")
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch.launch_command_parser().parse_args(
        ["--config_file", str(path), "-m", "collabrl", "train", "sft"]
    )
    args, defaults, _ = launch._validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    for name, value in env.items():
        if name.startswith("ACCELERATE_"):
            monkeypatch.setenv(name, value)
    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision(args.mixed_precision)
    return args, plugin


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_config_reaches_the_processes_as_written(path, monkeypatch):
    """The ZeRO stage, offloading and the 16-bit gather reach accelerate's DeepSpeedPlugin; the
    batch values stay "auto" so the collabrl config (through TRL) sets them."""
    import yaml

    written = yaml.safe_load(path.read_text())["deepspeed_config"]
    args, plugin = _deepspeed_launch(path, monkeypatch)
    assert args.use_deepspeed and args.num_processes == 8
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == written["zero_stage"]
    assert zero["offload_optimizer"]["device"] == written["offload_optimizer_device"]
    assert zero["offload_param"]["device"] == written["offload_param_device"]
    # ZeRO-3 gathers the shards into one file at save time, or `final` would hold only shards
    assert zero["stage3_gather_16bit_weights_on_model_save"] == (written["zero_stage"] == 3)
    assert plugin.zero3_init_flag == (written["zero_stage"] == 3)
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
    ):
        assert plugin.deepspeed_config[key] == "auto", key
    assert plugin.deepspeed_config["bf16"]["enabled"] == (args.mixed_precision == "bf16")


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_accepts_the_filled_config(path, monkeypatch, tmp_path):
    """With the shipped recipe's batch settings filled in as the trainer does, DeepSpeed's own
    config parser accepts the result (needs deepspeed, in the train extra)."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    shipped = path.read_text().splitlines()[0].split("--config ")[-1].split()[0]
    train = load_config(ROOT / shipped).train
    trainer_args = TrainingArguments(  # before the launcher's environment: no process group
        output_dir=str(tmp_path),
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        use_cpu=True,
    )
    _, plugin = _deepspeed_launch(path, monkeypatch)
    filled = HfTrainerDeepSpeedConfig(plugin.deepspeed_config)
    filled.trainer_config_process(trainer_args)
    parsed = DeepSpeedConfig(filled.config)
    assert parsed.zero_optimization_stage == plugin.zero_stage
    assert parsed.train_micro_batch_size_per_gpu == train.per_device_batch_size
    assert (
        parsed.train_batch_size == train.per_device_batch_size * train.gradient_accumulation_steps
    )
