"""Checks and truncation of exported training rows before a trainer sees them, every change counted.

Why this is not left to TRL: its DPOTrainer drops examples whose prompt alone exceeds
``max_length`` without saying so, and cuts longer ones at the end, so a long multi-turn prompt
would lose its latest user turn (the one the reply answers) and keep stale early turns. Here:

- a preference pair is rejected when it is malformed, a completion is empty, or chosen equals
  rejected (both would only add noise), with the reason counted;
- a prompt that does not fit is truncated FROM THE START: whole early messages are dropped
  (a leading system message is kept while it fits, and the kept part starts at a user turn so
  chat templates that insist on alternation still render it); if the last message alone is too
  long, the tail of it is kept. The prompt then fits ``max_prompt_length`` and, with the longer
  completion, ``max_length``; such rows are kept and counted with the messages and tokens cut;
- a pair whose completion leaves no room for any prompt is dropped and counted.

SFT rows (whole conversations) are checked too: rows with no assistant reply, or whose first
reply starts beyond ``max_length`` (TRL would drop them silently), are dropped and counted; rows
longer than ``max_length`` are kept (TRL keeps their start: every kept reply still sees its whole
prefix) and counted. Lengths are measured with the tokenizer's own chat template, as TRL does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, Any]]


class TrainingDataError(ValueError):
    """Training data that cannot be used at all (no usable rows); the message says why."""


@dataclass
class DataReport:
    """What happened to the rows of one file: kept, dropped (by reason) and truncated."""

    name: str
    rows: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    messages_cut: int = 0  # whole messages dropped
    messages_shortened: int = 0  # last messages of which only the tail was kept
    tokens_cut: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "truncated": self.truncated,
            "messages_cut": self.messages_cut,
            "messages_shortened": self.messages_shortened,
            "tokens_cut": self.tokens_cut,
        }

    def summary(self) -> str:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        return (
            f"{self.name}: {self.kept}/{self.rows} rows kept; dropped: {dropped}; "
            f"truncated: {self.truncated} ({self.messages_cut} messages dropped, "
            f"{self.messages_shortened} shortened, {self.tokens_cut} tokens cut)"
        )


def token_ids(tokenizer, messages: Messages, generation_prompt: bool = False) -> list[int]:
    """``messages`` rendered with the chat template and tokenized, exactly as TRL does."""
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return list(rendered["input_ids"])


def _prompt_length(tokenizer, messages: Messages) -> int:
    return len(token_ids(tokenizer, messages, generation_prompt=True))


def _is_message(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("role"), str)
        and isinstance(item.get("content"), str)
    )


def pair_problem(row: dict[str, Any]) -> str | None:
    """Why a preference row cannot be trained on, or None when it can."""
    prompt, chosen, rejected = row.get("prompt"), row.get("chosen"), row.get("rejected")
    if not (isinstance(prompt, list) and prompt and all(_is_message(m) for m in prompt)):
        return "malformed"
    for completion in (chosen, rejected):
        if not (
            isinstance(completion, list)
            and len(completion) == 1
            and _is_message(completion[0])
            and completion[0]["role"] == "assistant"
        ):
            return "malformed"
    if not chosen[0]["content"].strip() or not rejected[0]["content"].strip():
        return "empty_completion"
    if chosen[0]["content"].strip() == rejected[0]["content"].strip():
        return "chosen_equals_rejected"
    return None


def completion_length(tokenizer, prompt: Messages, completion: Messages) -> int:
    """Tokens of ``completion`` after ``prompt``: where prompt and prompt+completion diverge."""
    prompt_ids = token_ids(tokenizer, prompt, generation_prompt=True)
    full_ids = token_ids(tokenizer, prompt + completion)
    shared = 0
    for a, b in zip(prompt_ids, full_ids):
        if a != b:
            break
        shared += 1
    return len(full_ids) - shared


def fit_prompt(tokenizer, prompt: Messages, budget: int) -> Messages | None:
    """The prompt cut from the start to at most ``budget`` tokens, or None if nothing fits.

    Prefers, in order: a leading system message plus the longest ending that starts at a user
    message; the system message plus the tail of the last message; the same two without the
    system message."""
    if _prompt_length(tokenizer, prompt) <= budget:
        return prompt
    head = prompt[:1] if prompt[0]["role"] == "system" and len(prompt) > 1 else []
    body = prompt[len(head) :]
    starts = [i for i, m in enumerate(body) if m["role"] == "user" or i == len(body) - 1]
    for kept_head in [head, []] if head else [[]]:
        for start in starts:
            candidate = kept_head + body[start:]
            if _prompt_length(tokenizer, candidate) <= budget:
                return candidate
        tail = _keep_tail(tokenizer, kept_head, body[-1], budget)
        if tail is not None:
            return [*kept_head, tail]
    return None


def _keep_tail(tokenizer, head: Messages, message: dict[str, Any], budget: int) -> dict | None:
    """``message`` with only the end of its content, so that head + it fits ``budget``."""
    room = budget - _prompt_length(tokenizer, [*head, {**message, "content": ""}])
    ids = tokenizer(message["content"], add_special_tokens=False)["input_ids"]
    keep = min(room, len(ids))
    while keep > 0:
        # a cut inside a multi-byte character decodes to U+FFFD; drop that fragment
        candidate = {**message, "content": tokenizer.decode(ids[-keep:]).lstrip("\ufffd")}
        over = _prompt_length(tokenizer, [*head, candidate]) - budget
        if over <= 0:
            return candidate
        keep -= over
    return None


def prepare_pairs(
    rows: list[dict[str, Any]],
    tokenizer,
    max_length: int,
    max_prompt_length: int,
    name: str = "dpo",
) -> tuple[list[dict[str, Any]], DataReport]:
    """Validated preference rows whose prompt fits ``max_prompt_length`` and, with the longer of
    the two completions, ``max_length``; plus the report of what was dropped or cut."""
    report = DataReport(name=name, rows=len(rows))
    kept = []
    for row in rows:
        problem = pair_problem(row)
        if problem is not None:
            report.dropped[problem] += 1
            continue
        prompt = row["prompt"]
        longest = max(completion_length(tokenizer, prompt, row[k]) for k in ("chosen", "rejected"))
        budget = min(max_prompt_length, max_length - longest)
        fitted = fit_prompt(tokenizer, prompt, budget) if budget > 0 else None
        if fitted is None:
            tight = max_length - longest < max_prompt_length
            report.dropped["completion_too_long" if tight else "max_prompt_length_too_small"] += 1
            continue
        if fitted is not prompt:
            report.truncated += 1
            report.messages_cut += len(prompt) - len(fitted)
            report.messages_shortened += fitted[-1]["content"] != prompt[-1]["content"]
            report.tokens_cut += _prompt_length(tokenizer, prompt) - _prompt_length(
                tokenizer, fitted
            )
        kept.append({**row, "prompt": fitted})
    report.kept = len(kept)
    return kept, report


def prepare_conversations(
    rows: list[dict[str, Any]], tokenizer, max_length: int, name: str = "sft"
) -> tuple[list[dict[str, Any]], DataReport]:
    """SFT rows that will contribute loss within ``max_length``; over-long rows are counted
    (their end is cut by the trainer), rows that would contribute nothing are dropped."""
    report = DataReport(name=name, rows=len(rows))
    kept = []
    for row in rows:
        messages = row.get("messages")
        if not (isinstance(messages, list) and all(_is_message(m) for m in messages)):
            report.dropped["malformed"] += 1
            continue
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
        if first is None:
            report.dropped["no_assistant_message"] += 1
            continue
        if first > 0 and _prompt_length(tokenizer, messages[:first]) >= max_length:
            report.dropped["first_reply_beyond_max_length"] += 1
            continue
        length = len(token_ids(tokenizer, messages))
        if length > max_length:
            report.truncated += 1
            report.tokens_cut += length - max_length
        kept.append(row)
    report.kept = len(kept)
    return kept, report
