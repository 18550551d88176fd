"""``collabrl train <method>``, ``collabrl merge`` and ``collabrl chat``: train a policy, turn its
adapter into a plain model, and talk to a checkpoint in the terminal.

``train`` imports its recipe (``collabrl.train.<method>``) only when asked, so the rest of the
command line works without the training extra. Expected failures end with one line, no
traceback: a checkpoint that cannot be resumed, missing or unusable data (exit 2), a NaN/inf loss
(exit 1), an online recipe stopped by its ``budget`` (exit 3: what was spent, how to continue),
a one-device recipe (online DPO, PPO) launched as several processes (exit 2). Under
``accelerate launch -m collabrl train ...`` or ``torchrun`` every process runs this: only rank 0
prints where the model went, and each leaves the process group before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import TextIO

from collabrl.budget import EXIT_BUDGET
from collabrl.cli.common import add_config_args, console, load, print_error
from collabrl.cli.paths import check_output_dir
from collabrl.console_log import log_file
from collabrl.train.adapters import ModelFolderError
from collabrl.train.common import BudgetStop, CheckpointError, NonFiniteLossError
from collabrl.train.data import TrainingDataError
from collabrl.types import GenerationParams, Message

RECIPES = {"sft": "sft", "dpo": "dpo", "online-dpo": "online_dpo", "grpo": "grpo", "ppo": "ppo"}
TRAIN_EXTRA = "pip install 'collabrl[train]'"


def _error(message: object, code: int = 2) -> int:
    print_error(message)
    return code


def _import_recipe(method: str):
    """The recipe module for ``method``, or a one-line reason why it cannot be used."""
    name = f"collabrl.train.{RECIPES[method]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return f"the {method} recipe is not available in this installation ({name} is missing)"
        return f"training needs the train extra ({error.name} is missing): {TRAIN_EXTRA}"
    if not callable(getattr(module, "train", None)):
        return f"{name} has no train(config) function"
    return module


def run_train(args: argparse.Namespace) -> int:
    config = load(args)
    check_output_dir(config.train.output_dir, "train.output_dir")
    recipe = _import_recipe(args.method)
    if isinstance(recipe, str):
        return _error(recipe)
    finished = False
    try:
        with log_file(config.train.output_dir, f"train {args.method}"):
            final = recipe.train(config)
        finished = True
    except NonFiniteLossError as error:
        return _error(error, code=1)
    except BudgetStop as error:
        return _error(error, code=EXIT_BUDGET)
    except (CheckpointError, TrainingDataError, OSError) as error:  # OSError: e.g. no such model
        return _error(error)
    finally:
        _leave_process_group(finished)
    if os.environ.get("RANK", "0") == "0":
        console.print(f"{args.method}: model saved to {final}", highlight=False)
    return 0


def _leave_process_group(finished: bool) -> None:
    """End this process's part of a multi-process run: a launched process that exits with its
    process group still open, or closes it while another still talks to it, can abort in the
    backend's threads (exit status -6 for a run that finished). Processes that ``finished`` wait
    for each other first; one that failed leaves at once (the others may never get here).
    Torch is not imported for this: without it there is no process group."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return
    if finished:
        distributed.barrier()
    distributed.destroy_process_group()


def run_merge(args: argparse.Namespace) -> int:
    check_output_dir(args.output, "--output")
    from collabrl.train.adapters import merge_adapter

    try:
        output = merge_adapter(args.adapter, args.output, args.base)
    except (ModelFolderError, OSError) as error:
        return _error(error)
    console.print(f"merged model saved to {output}", highlight=False)
    return 0


async def chat_loop(
    backend, lines: TextIO, out: TextIO, system: str | None, params: GenerationParams
) -> list[Message]:
    """Read user lines until EOF or ``/quit``, answer each with ``backend``; the conversation
    is kept across turns. Returns the whole conversation."""
    messages = [Message(role="system", content=system)] if system else []
    prompt = "you> " if lines.isatty() else ""
    try:
        while True:
            out.write(prompt)
            out.flush()
            line = await asyncio.to_thread(lines.readline)
            text = line.strip()
            if not line or text == "/quit":
                break
            if not text:
                continue
            messages.append(Message(role="user", content=text))
            [reply] = await backend.generate(messages, params)
            messages.append(Message(role="assistant", content=reply.text))
            out.write(f"assistant> {reply.text}\n")
            out.flush()
    finally:
        await backend.aclose()
    return messages


def run_chat(args: argparse.Namespace) -> int:
    import torch

    from collabrl.backends.hf_local import HFLocalBackend
    from collabrl.train.adapters import load_model

    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    try:
        model, tokenizer = load_model(args.model, args.base, device=device)
    except (ModelFolderError, OSError) as error:
        return _error(f"--model {args.model}: {error}")
    backend = HFLocalBackend(
        model, tokenizer, max_batch_size=1, max_wait_ms=0, name=str(args.model)
    )
    params = GenerationParams(temperature=args.temperature, max_tokens=args.max_tokens)
    asyncio.run(chat_loop(backend, sys.stdin, sys.stdout, args.system, params))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="fine-tune the policy: sft, dpo, online-dpo, grpo, ppo"
    )
    methods = train.add_subparsers(dest="method", metavar="method", required=True)
    for method in RECIPES:
        recipe = methods.add_parser(method, help=f"train with the {method} recipe")
        add_config_args(recipe)
        recipe.set_defaults(func=run_train)

    merge = commands.add_parser("merge", help="merge a LoRA adapter into its base model")
    merge.add_argument("--adapter", required=True, help="adapter folder (e.g. runs/train/final)")
    merge.add_argument("--output", required=True, help="folder for the merged model")
    merge.add_argument("--base", help="base model (default: the adapter's base_model_name_or_path)")
    merge.set_defaults(func=run_merge)

    chat = commands.add_parser("chat", help="talk to a checkpoint (model or adapter folder)")
    chat.add_argument(
        "--model", required=True, help="model folder, adapter folder, hub id or alias"
    )
    chat.add_argument("--base", help="base model of an adapter (default: from adapter_config.json)")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=512, help="reply length limit")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    chat.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    chat.set_defaults(func=run_chat)
