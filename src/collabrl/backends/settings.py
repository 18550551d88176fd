"""A role's configured sampling settings, applied over the settings its callers ask for.

Judges and extractors bring their own defaults (greedy decoding, room for a long rationale or a
whole document). When a config sets fields of ``roles.<name>.generation`` explicitly, for example
a short ``max_tokens`` for a small local judge that would otherwise ramble for a thousand tokens,
those fields win; the fields it leaves unset keep the caller's defaults. ``n`` and
``first_sample`` always stay the caller's: they say how many samples a call needs and which.
"""

from __future__ import annotations

from collections.abc import Sequence

from collabrl.backends.base import Backend, BackendWrapper
from collabrl.types import Completion, GenerationParams, Message

OVERRIDABLE = ("temperature", "top_p", "max_tokens", "stop", "seed")


class ConfiguredSettings(BackendWrapper):
    """``inner`` with the explicitly configured fields of ``configured`` applied to every call."""

    def __init__(self, inner: Backend, configured: GenerationParams) -> None:
        super().__init__(inner)
        self.overrides = {
            name: getattr(configured, name)
            for name in OVERRIDABLE
            if name in configured.model_fields_set
        }

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        if self.overrides:
            params = params.model_copy(update=self.overrides)
        return await self.inner.generate(messages, params)
