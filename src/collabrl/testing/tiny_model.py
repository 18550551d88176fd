"""A tiny random chat model built offline in a fraction of a second, for tests.

Tests of the local backend and of the training recipes need a real transformers model and
tokenizer (chat template, padding, EOS, ``generate``, PEFT, TRL trainers) but not a good one,
and no model hub is reachable. ``tiny_chat_model`` trains a byte-level BPE tokenizer on a small
built-in corpus (so any text can be encoded) and builds a 2-layer ``LlamaForCausalLM`` with
random weights from a fixed seed: the same seed gives the same weights and the same outputs.

The chat template is ChatML (``<|im_start|>role\\n...<|im_end|>``) with the roles system, user
and assistant, ends a turn with the EOS token ``<|im_end|>``, marks assistant replies with
``{% generation %}`` so TRL's assistant-only loss works, and pads with a separate ``<|pad|>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

PAD, BOS, EOS = "<|pad|>", "<|im_start|>", "<|im_end|>"

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = """\
You are a helpful assistant. Ask a clarifying question when the request is ambiguous.
The user wants to write a short story about a robot who learns to paint with bright colors.
What is the sum of 12 and 30? The answer is 42. Let me explain each step of the solution.
Write a Python function that returns the largest number in a list of integers.
def largest(numbers): return max(numbers) if numbers else None
Could you tell me more about the audience, the tone and the length you have in mind?
Thanks, that helps a lot. Please make the second paragraph shorter and more formal.
A document about climate, energy, water and cities: summarize it in three sentences.
Sure! Here is a first draft. Tell me what you would like to change, and I will revise it.
The quick brown fox jumps over the lazy dog; 0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } < > ?
"""


def tiny_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A byte-level BPE chat tokenizer trained in-process on the built-in corpus."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_chat_model(
    seed: int = 0, *, hidden_size: int = 64, num_layers: int = 2, max_positions: int = 1024
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """``(model, tokenizer)``: a random 2-layer Llama in eval mode, float32, on the CPU."""
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        initializer_range=0.2,  # larger than usual, so greedy replies differ between prompts
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model.eval(), tokenizer


def save_tiny_chat_model(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write the tiny model and its tokenizer as a ``from_pretrained`` folder; returns it."""
    path = Path(path)
    model, tokenizer = tiny_chat_model(seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
