"""Trained checkpoints as ordinary models: load a folder that holds either a full model or a LoRA
adapter, and merge an adapter into its base.

The recipes save LoRA adapters (small, fast to write); serving stacks (vLLM, SGLang, the
``hf_local`` backend) and most tools want one plain model folder. An adapter folder names its
base in ``adapter_config.json`` (``base_model_name_or_path``); that base may be overridden, e.g.
when the adapter was trained on another machine. The tokenizer is taken from the checkpoint
folder when it has one (the recipes save it there, with the chat template used in training),
else from the base.
"""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"


class ModelFolderError(ValueError):
    """A checkpoint folder that cannot be loaded; the message says what is missing."""


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def adapter_base(adapter: str | Path, base: str | None = None) -> str:
    """The base model of ``adapter``: ``base`` when given, else the one its config names."""
    if base:
        return base
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text())
    named = config.get("base_model_name_or_path")
    if not named:
        raise ModelFolderError(f"{adapter}/{ADAPTER_CONFIG} names no base model; pass --base")
    return named


def load_model(path: str | Path, base: str | None = None, dtype: str = "auto", device: str = "cpu"):
    """(model, tokenizer) for a full model folder, a hub id or alias, or an adapter folder
    (then the base with the adapter applied, as a PeftModel)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from collabrl.models import resolve_model

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    local = Path(path)
    if local.is_file() or (
        local.is_dir()
        and not any((local / name).is_file() for name in ("config.json", ADAPTER_CONFIG))
    ):
        raise ModelFolderError(
            f"{path} is neither a model folder (config.json) nor an adapter "
            f"folder ({ADAPTER_CONFIG})"
        )
    if not is_adapter(local):
        resolved = resolve_model(str(path))
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype)
        return model.to(device).eval(), AutoTokenizer.from_pretrained(resolved)
    from peft import PeftModel

    base_path = resolve_model(adapter_base(local, base))
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, str(local))
    has_tokenizer = (local / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(local) if has_tokenizer else base_path)
    return model.to(device).eval(), tokenizer


def merge_adapter(adapter: str | Path, output: str | Path, base: str | None = None) -> Path:
    """Merge the LoRA ``adapter`` into its base and save model + tokenizer to ``output``."""
    if not is_adapter(adapter):
        raise ModelFolderError(f"{adapter} is not an adapter folder (no {ADAPTER_CONFIG})")
    model, tokenizer = load_model(adapter, base)
    merged = model.merge_and_unload()
    output = Path(output)
    merged.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output
