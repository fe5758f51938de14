"""Textual-free pieces the interactive views run on: what a model slot is, and live figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import OndeviceError
from .kinds import Kind
from .refs import ResolvedModel
from .runtime.engine import Backend, open_model
from .runtime.protocol import Finished, GenerateRequest, GenerationStats, LoadOptions, PromptReady, TokenEvent


class RunMode(str, Enum):
    """Concurrent runs share the cores, so their speeds are not each model's alone."""

    CONCURRENT = "concurrent"
    SEQUENTIAL = "one after another"


@dataclass(frozen=True)
class ModelSpec:
    """A model the user picked, and how to open a backend for it."""

    ref: str
    label: str
    kind: Kind
    quant: str
    size_bytes: int
    open: Callable[[], Backend] = field(compare=False, repr=False)

    @classmethod
    def from_resolved(cls, model: ResolvedModel, options: LoadOptions) -> ModelSpec:
        return cls(
            ref=model.ref,
            label=model.display_name,
            kind=model.kind,
            quant=model.quant,
            size_bytes=model.summary.file_size,
            open=lambda: open_model(model, options),
        )


class LiveStats:
    """Running figures of one answer, from the token times the worker measured."""

    def __init__(self, window: float = 0.5) -> None:
        self.window = window
        self.tokens = 0
        self.first_t: float | None = None
        self.last_t = 0.0
        self.samples: list[float] = []  # tok/s per window, for a sparkline
        self._window_start = 0.0
        self._window_tokens = 0
        self.final: GenerationStats | None = None

    def add(self, event: TokenEvent) -> None:
        if event.token_id < 0:  # a flush of held-back text, not a token
            return
        self.tokens += 1
        self.last_t = event.t
        if self.first_t is None:  # a window counts the tokens that come after its start
            self.first_t = self._window_start = event.t
            return
        self._window_tokens += 1
        elapsed = event.t - self._window_start
        if elapsed >= self.window:
            self.samples.append(self._window_tokens / elapsed)
            self._window_start, self._window_tokens = event.t, 0

    def finish(self, stats: GenerationStats) -> None:
        self.final = stats
        elapsed = self.last_t - self._window_start
        # The last stretch, shorter than a window: kept when it is long enough to mean something.
        if self._window_tokens and elapsed >= self.window / 2:
            self.samples.append(self._window_tokens / elapsed)
            self._window_tokens = 0

    @property
    def time_to_first_token(self) -> float | None:
        if self.final is not None:
            return self.final.time_to_first_token
        return self.first_t

    @property
    def tokens_per_second(self) -> float:
        """Generation speed so far: tokens after the first over the time since it."""
        if self.final is not None:
            return self.final.generation_tps
        if self.first_t is None or self.tokens < 2 or self.last_t <= self.first_t:
            return 0.0
        return (self.tokens - 1) / (self.last_t - self.first_t)


def stream_batched(
    backend: Backend,
    request: GenerateRequest,
    live: LiveStats,
    emit: Callable[[str, PromptReady | None, Finished | None], None],
    flush_seconds: float = 0.1,
) -> None:
    """Run `request`, calling `emit(text, prompt, finished)` at most every `flush_seconds`.

    Blocking: views call it from a worker thread. Batching keeps redraws from competing with
    the model for the cores. Raises OndeviceError when the model fails.
    """
    pending: list[str] = []
    last = time.monotonic()
    request = replace(request, send_every=flush_seconds)  # the worker need not wake us more often
    try:
        for event in backend.stream(request):
            if isinstance(event, TokenEvent):
                live.add(event)
                pending.append(event.text)
                if time.monotonic() - last >= flush_seconds:
                    emit("".join(pending), None, None)
                    pending, last = [], time.monotonic()
            elif isinstance(event, PromptReady):
                emit("", event, None)
            elif isinstance(event, Finished):
                live.finish(event.stats)
                emit("".join(pending), None, event)
                pending = []
    except OndeviceError:
        if pending:  # what the model said before it failed stays on screen
            emit("".join(pending), None, None)
        raise
