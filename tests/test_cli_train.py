"""`collabrl train`, `collabrl merge` and `collabrl chat` as a user runs them: dispatch to the
recipes, clear one-line failures with the documented exit codes, merging, chatting via stdin."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from collabrl.backends.scripted import ScriptedBackend
from collabrl.cli import main
from collabrl.cli.train import RECIPES, chat_loop
from collabrl.testing.tiny_model import save_tiny_chat_model
from collabrl.testing.train_data import write_export
from collabrl.train.common import CheckpointError, NonFiniteLossError
from collabrl.types import GenerationParams


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def config_file(tmp_path, tiny_model) -> Path:
    export = write_export(tmp_path / "export")
    train = {
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "run"),
        "dtype": "float32",
        "per_device_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "save_steps": 2,
        "max_length": 256,
        "lora": {"r": 4},
        "sft": {"data": str(export)},
        "dpo": {"data": str(export)},
    }
    roles = {"policy": {"kind": "hf_local", "model": str(tiny_model)}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"roles": roles, "train": train}))
    return path


def fake_recipe(monkeypatch, method: str, train) -> None:
    module = types.ModuleType(f"collabrl.train.{RECIPES[method]}")
    module.train = train
    monkeypatch.setitem(sys.modules, module.__name__, module)


@pytest.mark.parametrize("method", list(RECIPES))
def test_train_dispatches_to_the_recipe(monkeypatch, capsys, config_file, method):
    seen = []

    def train(config):
        seen.append(config.train.max_steps)
        return Path("somewhere/final")

    fake_recipe(monkeypatch, method, train)
    assert main(["train", method, "--config", str(config_file), "train.max_steps=7"]) == 0
    assert seen == [7]
    assert f"{method}: model saved to somewhere/final" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NonFiniteLossError("loss became nan at step 3"), 1),
        (CheckpointError("cannot resume from x: missing optimizer.pt"), 2),
        (FileNotFoundError("export/dpo_train.jsonl not found: run `collabrl export` first"), 2),
    ],
)
def test_expected_failures_end_with_one_line_and_an_exit_code(
    monkeypatch, capsys, config_file, error, code
):
    def train(config):
        raise error

    fake_recipe(monkeypatch, "dpo", train)
    assert main(["train", "dpo", "--config", str(config_file)]) == code
    out = capsys.readouterr()
    assert f"error: {error}" in out.out and "Traceback" not in out.out + out.err


def test_a_missing_recipe_is_named(monkeypatch, capsys, config_file):
    monkeypatch.setitem(RECIPES, "ppo", "no_such_recipe")
    assert main(["train", "ppo", "--config", str(config_file)]) == 2
    assert "the ppo recipe is not available" in capsys.readouterr().out


def test_train_sft_end_to_end_then_refuses_a_broken_checkpoint(capsys, config_file, tmp_path):
    assert main(["train", "sft", "--config", str(config_file)]) == 0
    final = tmp_path / "run" / "final"
    assert f"sft: model saved to {final}" in capsys.readouterr().out
    assert (final / "adapter_model.safetensors").is_file()
    (tmp_path / "run" / "checkpoint-2" / "optimizer.pt").unlink()
    assert main(["train", "sft", "--config", str(config_file), "train.max_steps=4"]) == 2
    assert "missing optimizer.pt" in capsys.readouterr().out


def test_missing_data_is_a_clear_error(capsys, config_file, tmp_path):
    (tmp_path / "export" / "dpo_train.jsonl").unlink()
    assert main(["train", "dpo", "--config", str(config_file)]) == 2
    out = capsys.readouterr().out
    assert "dpo_train.jsonl not found: run `collabrl export` first" in out


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory) -> Path:
    """A LoRA adapter with random (non-zero) weights, saved like a recipe's final folder."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    folder = tmp_path_factory.mktemp("adapter") / "final"
    peft_model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def greedy(model, tokenizer, text: str) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    return out[0].tolist()


def test_merge_gives_the_same_greedy_tokens_as_base_plus_adapter(capsys, adapter, tmp_path):
    from peft import PeftModel

    output = tmp_path / "merged"
    assert main(["merge", "--adapter", str(adapter), "--output", str(output)]) == 0
    assert f"merged model saved to {output}" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(output)
    merged = AutoModelForCausalLM.from_pretrained(output).eval()
    base_path = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_path)
    base_weights = {k: v.clone() for k, v in base.state_dict().items()}
    with_adapter = PeftModel.from_pretrained(base, adapter).eval()
    for text in ("Hi", "What is the sum of 12 and 30?"):
        assert greedy(merged, tokenizer, text) == greedy(with_adapter, tokenizer, text)
    merged_weights = merged.state_dict()
    assert merged_weights.keys() == base_weights.keys()  # a plain model, no LoRA modules left
    assert any(not torch.equal(merged_weights[k], base_weights[k]) for k in base_weights)


def test_merge_refuses_a_folder_without_adapter(capsys, tmp_path):
    assert main(["merge", "--adapter", str(tmp_path), "--output", str(tmp_path / "m")]) == 2
    assert "is not an adapter folder" in capsys.readouterr().out


def test_chat_reads_stdin_until_quit(monkeypatch, capsys, adapter):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n\nWhat is 12 + 30?\n/quit\nnever sent\n"))
    assert (
        main(["chat", "--model", str(adapter), "--max-tokens", "6", "--system", "Be brief."]) == 0
    )
    replies = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("assistant> ")
    ]
    assert len(replies) == 2


async def test_chat_keeps_the_conversation():
    backend = ScriptedBackend(["first answer", "second answer"])
    out = io.StringIO()
    messages = await chat_loop(
        backend,
        io.StringIO("one\ntwo\n"),
        out,
        "Be brief.",
        GenerationParams(temperature=0.0, max_tokens=8),
    )
    assert out.getvalue() == "assistant> first answer\nassistant> second answer\n"
    second_call = [(m.role, m.content) for m in backend.calls[1].messages]
    assert second_call == [
        ("system", "Be brief."),
        ("user", "one"),
        ("assistant", "first answer"),
        ("user", "two"),
    ]
    assert len(messages) == 5
