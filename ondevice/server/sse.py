"""Server-sent events as OpenAI streams them: `data: JSON` events, and `data: [DONE]` at the end."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy may hold tokens back


def event(data: dict[str, Any]) -> bytes:
    """One event; JSON never holds a raw newline, so one `data:` line always carries it."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
