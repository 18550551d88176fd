"""Untrusted text in a judge's or extractor's prompt, framed so that it cannot pass for ours.

A judged conversation (and anything taken from it, like an extracted answer) is untrusted: the
policy wrote it, and under training pressure it may contain anything, including text shaped like
our markers or like the verdict we parse. Each judge and extractor call therefore gets a
**call id**: 12 hex digits of a SHA-256 over the template name and every untrusted value the
prompt shows. The id goes into the markers that frame each value (``<<<TRANSCRIPT <id>>>``
... ``<<<END TRANSCRIPT <id>>>``) and into the only reply shape the parser accepts (a grade line
or an artifact block that carries the id).

Why a content hash: untrusted text cannot contain the id, because it would have to contain a
hash of itself; so it can neither close its frame nor write a line that reads as the reply. And
the same inputs always render the same prompt (no secret, no clock, no counter), so requests
stay deterministic and the response cache keeps working across runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

ID_LENGTH = 12


def call_id(template: str, untrusted: Mapping[str, str]) -> str:
    """The id of one call: a hash of ``template`` and every untrusted value of its prompt."""
    payload = json.dumps([template, sorted(untrusted.items())], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:ID_LENGTH]


def frame(label: str, body: str, call: str) -> str:
    """``body`` between the marker lines ``<<<LABEL id>>>`` and ``<<<END LABEL id>>>``."""
    return f"<<<{label} {call}>>>\n{body}\n<<<END {label} {call}>>>"


def quote(text: str) -> str:
    """``text`` with every line starting with ``"> "`` (an empty line becomes ``">"``), so no
    line of it can pass for a role line or a marker of the prompt around it."""
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


_STATED_ID = re.compile(rf"This request's id is ([0-9a-f]{{{ID_LENGTH}}})\.")


def find_call_id(prompt: str) -> str | None:
    """The call id a judge or extractor prompt states before any untrusted text, as a model reads
    it; None when ``prompt`` states none. For scripted stand-ins of those models."""
    found = _STATED_ID.search(prompt)
    return found.group(1) if found else None
