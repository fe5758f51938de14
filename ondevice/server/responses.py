"""OpenAI's response objects built from the runtime's events: completions, their stream chunks, usage,
and our timings in llama-server's "timings" extension field."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..runtime.protocol import Finished, GenerationStats, StopReason

FINISH_REASONS = {
    StopReason.EOS: "stop",
    StopReason.STOP: "stop",
    StopReason.LENGTH: "length",
    StopReason.CANCELLED: "cancelled",  # only when the server shuts down mid-answer
}


def usage(stats: GenerationStats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    }


def timings(stats: GenerationStats) -> dict[str, float | int]:
    """llama-server's field names (prompt_*, predicted_*), plus the time to the first token."""
    return {
        "prompt_n": stats.prompt_tokens_evaluated,
        "cache_n": stats.prompt_tokens - stats.prompt_tokens_evaluated,
        "prompt_ms": round(stats.prompt_seconds * 1000, 3),
        "prompt_per_second": round(stats.prompt_tps, 3),
        "predicted_n": stats.generated_tokens,
        "predicted_ms": round(stats.generation_seconds * 1000, 3),
        "predicted_per_second": round(stats.generation_tps, 3),
        "time_to_first_token_ms": round(stats.time_to_first_token * 1000, 3),
    }


@dataclass(frozen=True)
class Reply:
    """One answer's identity, shared by its stream's chunks."""

    model: str
    chat: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, object_type: str) -> dict[str, Any]:
        prefix = "chatcmpl" if self.chat else "cmpl"
        return {
            "id": f"{prefix}-{self.id}",
            "object": object_type,
            "created": self.created,
            "model": self.model,
        }

    def complete(self, finished: Finished) -> dict[str, Any]:
        """The whole answer, as a non-streamed response."""
        reason = FINISH_REASONS[finished.stats.stop_reason]
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": finished.text},
                "logprobs": None,
                "finish_reason": reason,
            }
            head = self._head("chat.completion")
        else:
            choice = {"index": 0, "text": finished.text, "logprobs": None, "finish_reason": reason}
            head = self._head("text_completion")
        return {
            **head,
            "choices": [choice],
            "usage": usage(finished.stats),
            "timings": timings(finished.stats),
        }

    def chunk(self, text: str, role: bool = False) -> dict[str, Any]:
        """A stream chunk carrying text (the first chat chunk also carries the role)."""
        if self.chat:
            delta = {"role": "assistant", "content": text} if role else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
        return {**self._head("text_completion"), "choices": [choice]}

    def last_chunk(self, finished: Finished, include_usage: bool) -> list[dict[str, Any]]:
        """The chunk with the finish reason and timings, then (if asked) one with usage and no choices."""
        reason = FINISH_REASONS[finished.stats.stop_reason]
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
            head = self._head("chat.completion.chunk")
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
            head = self._head("text_completion")
        chunks = [{**head, "choices": [choice], "timings": timings(finished.stats)}]
        if include_usage:
            chunks.append({**head, "choices": [], "usage": usage(finished.stats)})
        return chunks
