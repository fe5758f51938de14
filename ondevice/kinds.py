"""Base or instruct: how a model is prompted depends on it, so the decision and its reason are kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .gguf_summary import GGUFSummary


class Kind(str, Enum):
    BASE = "base"
    INSTRUCT = "instruct"


_INSTRUCT_NAME = re.compile(r"(?:^|[-_ .])(instruct|it|chat)(?:$|[-_ .])", re.IGNORECASE)


@dataclass(frozen=True)
class KindDecision:
    kind: Kind
    reason: str


def decide_kind(summary: GGUFSummary, declared: Kind | None = None, declared_by: str = "") -> KindDecision:
    """Declared by a source or profile wins; then a chat template; then the model's name; else base."""
    if declared is not None:
        return KindDecision(declared, f"declared by {declared_by or 'the source'}")
    if summary.chat_template:
        return KindDecision(Kind.INSTRUCT, "the GGUF carries a chat template")
    for key in ("general.name", "general.finetune", "general.basename"):
        value = summary.metadata.get(key)
        if isinstance(value, str) and _INSTRUCT_NAME.search(value):
            return KindDecision(Kind.INSTRUCT, f"{key} {value!r} names an instruction-tuned model")
    return KindDecision(Kind.BASE, "no chat template and no instruct marker in the model's name")
