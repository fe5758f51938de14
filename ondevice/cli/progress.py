"""The CLI's one progress display: every long job (download, convert, quantize, bench, eval) reports
`Progress` events, drawn here as a transient bar on stderr."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Column
from rich.text import Text

from ..planning.plan import LoadPlan
from ..progress import Phase, Progress, Unit
from ..refs import ResolvedModel, resolve, verify
from ..units import format_bytes
from .common import err_console, note

LINE_EVERY_S = 5.0


class _CountColumn(ProgressColumn):
    """done/total: sizes for bytes (1.2/3.4 GB), plain numbers for anything else (12/30)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))  # else "MB" can wrap alone onto a new line
        self._bytes, self._numbers = DownloadColumn(), MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        column = self._bytes if task.fields.get("unit") is Unit.BYTES else self._numbers
        return column.render(task)


class ProgressDisplay:
    """A `ProgressFn` that draws each event on one transient bar on stderr.

    The bar opens on the first event, so work that reports nothing (a model already in the store, a
    mistyped path) prints nothing, not even the empty line a stopped bar leaves off a terminal. It
    closes while a library draws its own bars (huggingface_hub's downloads) and around a `note`, so
    nothing draws over it.
    """

    def __init__(self, console: Console = err_console) -> None:
        self._console = console
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._job = ""  # the event task the bar shows
        self._last_line = 0.0  # when the last progress line went out (no terminal)

    def __call__(self, event: Progress) -> None:
        if event.phase is Phase.HANDED_OFF:
            self.pause()
            return
        description = f"{event.task}: {event.step}" if event.step else event.task
        if not self._console.is_terminal:
            self._line(event, description)
            return
        if self._bar is None:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                _CountColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
        if self._task is not None and event.task == self._job:
            self._bar.update(
                self._task, description=description, completed=event.done, total=event.total, unit=event.unit
            )
        else:
            # A new job gets a new task: its own clock, and no total when it knows none (update() keeps
            # an old total when given None).
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(
                description, total=event.total, completed=event.done, unit=event.unit
            )
            self._job = event.task
        if not self._bar.live.is_started:  # started once the task is there: the first frame is right
            self._bar.start()

    def _line(self, event: Progress, description: str) -> None:
        """Without a terminal (a pipe, a CI log) a bar cannot redraw: a line per new job, then one at
        most every LINE_EVERY_S seconds, and one when the job is done."""
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if event.task != self._job or finished or now - self._last_line >= LINE_EVERY_S:
            if event.unit is Unit.BYTES:
                count = format_bytes(event.done) + (f"/{format_bytes(event.total)}" if event.total else "")
            else:
                count = f"{event.done}" + (f"/{event.total}" if event.total is not None else "")
            self._console.print(f"{description} ({count})", markup=False, highlight=False, soft_wrap=True)
            self._job, self._last_line = event.task, now

    @property
    def is_open(self) -> bool:
        """Whether the bar is on the terminal now."""
        return self._bar is not None

    def pause(self) -> None:
        """Close the bar; the next event opens it again."""
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task, self._job = None, None, ""

    def note(self, text: str) -> None:
        """A status line on stderr, with the bar out of its way."""
        self.pause()
        note(text)


@contextlib.contextmanager
def progress_display(console: Console = err_console) -> Iterator[ProgressDisplay]:
    """A ProgressDisplay that is closed when the block ends, however it ends."""
    display = ProgressDisplay(console)
    try:
        yield display
    finally:
        display.pause()


def resolve_with_progress(ref: str, verified: bool = False, plan: LoadPlan | None = None) -> ResolvedModel:
    """Resolve a reference, showing a bar if a bundled model has to be assembled first; with
    `verified`, a stored model's sha256 is checked against its manifest too. With `plan`, a NAME with
    several levels in the store means the best of them that fits in memory."""
    with progress_display() as show:
        model = resolve(ref, progress=show, choose=plan.best_fit if plan is not None else None)
    if verified:
        verify(model)
    return model
