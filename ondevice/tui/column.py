"""One model's column in the compare view: what it is, what it says, and how fast."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from ..errors import OndeviceError
from ..live import LiveStats, ModelSpec, stream_batched
from ..runtime.engine import Backend
from ..runtime.protocol import Finished, GenerateRequest, PromptReady
from ..terminal_text import plain_text
from ..units import format_bytes
from .stream_text import StreamText


class ColumnStatus(str, Enum):
    LOADING = "loading"
    READY = "ready"
    GENERATING = "generating"
    DONE = "done"
    STOPPED = "stopped"  # cancelled, or skipped before its turn
    ERROR = "error"


class ModelColumn(Vertical):
    """Streams one model's answer; the generation runs in a thread, never on the UI thread."""

    status: reactive[ColumnStatus] = reactive(ColumnStatus.LOADING)

    @dataclass
    class Loaded(Message):
        column: ModelColumn

    @dataclass
    class Chunk(Message):
        """New text and fresh figures, batched by the streaming thread."""

        column: ModelColumn
        text: str
        prompt: str | None = None
        finished: Finished | None = None
        error: str | None = None

    def __init__(self, spec: ModelSpec, index: int) -> None:
        super().__init__(id=f"column-{index}", classes="model-column")
        self.spec = spec
        self.index = index
        self.backend: Backend | None = None
        self.live = LiveStats()
        self.prompt_text: str | None = None
        self.memory_bytes = 0
        self.error: str | None = None
        self._stats_shown = ""

    def compose(self) -> ComposeResult:
        badge = f"[{self.spec.kind.value}]"
        yield Static(plain_text(self.spec.label), classes="model-name")
        yield Static(
            f"{badge} {self.spec.quant} · {format_bytes(self.spec.size_bytes)}",
            classes=f"model-meta {self.spec.kind.value}",
            markup=False,
        )
        yield StreamText(classes="answer")
        with Horizontal(classes="speed-row"):
            yield Static("tok/s", classes="speed-label")
            yield Sparkline([], classes="speed")
        yield Static("loading…", classes="stats", markup=False)

    @property
    def answer(self) -> StreamText:
        return self.query_one(".answer", StreamText)

    # -- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Open the backend in a thread; posts Loaded, or shows the error in the column."""
        self.run_worker(self._load, thread=True, group=f"load-{self.index}", exit_on_error=False)

    def _load(self) -> None:
        try:
            self.backend = self.spec.open()
        except OndeviceError as exc:
            self.post_message(self.Chunk(self, "", error=str(exc)))
            return
        self.app.open_backends.append(self.backend)
        self.post_message(self.Loaded(self))

    # -- streaming (called in a worker thread) ----------------------------------------------

    def stream(self, request: GenerateRequest) -> None:
        """Run one request to the end, posting batched chunks; blocking, so call it off the UI thread."""
        if self.backend is None:
            return

        def emit(text: str, prompt: PromptReady | None, finished: Finished | None) -> None:
            self.post_message(self.Chunk(self, text, prompt.text if prompt else None, finished))

        try:
            stream_batched(self.backend, request, self.live, emit)
        except OndeviceError as exc:
            self.post_message(self.Chunk(self, "", error=str(exc)))

    # -- on the UI thread -----------------------------------------------------------------

    def begin(self) -> None:
        """Clear the column for a new answer."""
        self.live = LiveStats()
        self.error = None
        self.answer.load_text("")
        self.query_one(Sparkline).data = []
        self.status = ColumnStatus.GENERATING
        self.refresh_stats()

    def apply(self, chunk: ModelColumn.Chunk) -> None:
        if chunk.prompt is not None:
            self.prompt_text = chunk.prompt
        if chunk.text:
            self.answer.append(chunk.text)
        if chunk.error is not None:
            self.error = chunk.error
            self.status = ColumnStatus.ERROR
        elif chunk.finished is not None:
            cancelled = chunk.finished.stats.stop_reason == "cancelled"
            self.status = ColumnStatus.STOPPED if cancelled else ColumnStatus.DONE
        sparkline = self.query_one(Sparkline)
        if len(sparkline.data or ()) != len(self.live.samples):  # a new sample every half second
            sparkline.data = list(self.live.samples)
        self.refresh_stats()

    def skip(self) -> None:
        """Stopped before its turn came (one-after-another mode)."""
        self.status = ColumnStatus.STOPPED
        self.refresh_stats()

    def refresh_stats(self) -> None:
        stats = self.query_one(".stats", Static)
        stats.set_class(bool(self.error), "error")
        if self.error:
            text = f"error: {self.error}"
        elif self.status is ColumnStatus.LOADING:
            text = "loading…"
        else:
            text = self._stats_text()
        if text != self._stats_shown:
            self._stats_shown = text
            stats.update(text, layout=False)  # its height is fixed: no need to lay the screen out again

    def _stats_text(self) -> str:
        live = self.live
        ttft = live.time_to_first_token
        parts = [
            f"{live.tokens_per_second:5.1f} tok/s",
            f"first {ttft:.2f} s" if ttft is not None else "first –",
            f"{live.tokens} tok",
            f"mem {format_bytes(self.memory_bytes)}",
            self.status.value,
        ]
        return " · ".join(parts)

    def poll_memory(self) -> None:
        if self.backend is not None:
            self.memory_bytes = self.backend.rss_bytes()
            self.refresh_stats()

    def stop(self) -> None:
        if self.backend is not None and self.status is ColumnStatus.GENERATING:
            self.backend.cancel()

    def close_backend(self) -> None:
        if self.backend is not None:
            self.backend.close()
            if self.backend in self.app.open_backends:
                self.app.open_backends.remove(self.backend)
            self.backend = None
