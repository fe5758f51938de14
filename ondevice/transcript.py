"""A chat transcript that saves as Markdown or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .errors import OndeviceError


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    content: str
    model: str | None = None  # which model answered (broadcast chats have several per user turn)
    tokens_per_second: float | None = None


@dataclass
class Transcript:
    models: list[str]
    system: str | None = None
    turns: list[Turn] = field(default_factory=list)
    started: str = field(default_factory=lambda: now_iso())  # ISO 8601 with the local offset
    sampling: dict[str, Any] | None = None  # the GenerationParams every answer was sampled with

    def to_markdown(self) -> str:
        lines = [f"# Chat with {', '.join(self.models)}", "", f"Started {self.started}.", ""]
        if self.system:
            lines += [f"**System:** {self.system}", ""]
        if self.sampling:
            settings = ", ".join(f"{k} {v}" for k, v in self.sampling.items() if v not in (None, (), []))
            lines += [f"Sampling: {settings}.", ""]
        for turn in self.turns:
            who = "You" if turn.role == "user" else (turn.model or "Assistant")
            speed = f" _({turn.tokens_per_second:.1f} tok/s)_" if turn.tokens_per_second else ""
            lines += [f"**{who}**{speed}:", "", turn.content.strip(), ""]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: Path) -> Path:
        """Write as Markdown (.md) or JSON (.json), atomically."""
        if path.suffix == ".md":
            write_text_atomic(path, self.to_markdown())
        elif path.suffix == ".json":
            write_text_atomic(path, self.to_json())
        else:
            raise OndeviceError(f"save a transcript as .md or .json, not {path.suffix or 'no extension'}")
        return path
