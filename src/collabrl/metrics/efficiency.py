"""Token efficiency: how much the assistant made the user read.

CollabLLM's intrinsic reward penalises long assistant output. Two forms are supported:

* ``form="penalty"`` (the paper): ``-min(lam * tokens, 1)``, lam = 5e-4 for code and math,
  1e-4 for documents. Already a cost: give it a positive weight.
* ``form="kilotokens"`` (the original code): ``tokens / 1000``, to be given a *negative* weight
  (e.g. -0.5 or -0.1), with no clamp. Paper mode (``configs/paper-*.yaml``) uses it with weight
  -0.5 for code and math and -0.1 for documents: -lam x tokens for the paper's lam, unclamped.

Only assistant messages are counted. The default counter approximates BPE tokens with a regex
(letter runs, numbers in chunks of up to three digits, each other symbol); it needs no model
files and is deterministic. Pass any ``str -> int`` callable, e.g. a tokenizer's
``lambda s: len(tok.encode(s))``, for exact counts comparable with the paper's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from collabrl.types import Conversation, Score, Task

TokenCounter = Callable[[str], int]
_TOKEN = re.compile(r"\d{1,3}|[^\W\d_]+|[^\w\s]|_")


def approx_token_count(text: str) -> int:
    """A model-free approximation of a BPE token count."""
    return len(_TOKEN.findall(text))


class TokenEfficiency:
    """The assistant's token cost in one of two forms (see the module docstring)."""

    name = "token_efficiency"

    def __init__(
        self,
        form: Literal["penalty", "kilotokens"] = "penalty",
        lam: float = 5e-4,
        count_tokens: TokenCounter = approx_token_count,
    ) -> None:
        if form not in ("penalty", "kilotokens"):
            raise ValueError(
                f"token_efficiency form must be 'penalty' or 'kilotokens', not {form!r}"
            )
        if not lam > 0:
            raise ValueError(f"token_efficiency lam must be > 0, not {lam!r}")
        self.form = form
        self.lam = float(lam)
        self.count_tokens = count_tokens

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        tokens = sum(self.count_tokens(m.content) for m in conversation.turns("assistant"))
        value = -min(self.lam * tokens, 1.0) if self.form == "penalty" else tokens / 1000
        return Score(value=value, detail={"tokens": tokens, "form": self.form})
