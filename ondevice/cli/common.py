"""Shared pieces of the commands: progress bars, notes, model descriptions and plain tables."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..refs import ResolvedModel, resolve, verify
from ..runtime.protocol import GenerationStats
from ..terminal_text import plain_text, visible_controls
from ..units import format_bytes

err_console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for long file work; yields a (done, total) callback.

    The bar starts with the first report, so work that needs none (a model already in the store, a
    mistyped path) prints nothing, not even the empty line a stopped bar leaves off a terminal.
    """
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if progress.live.is_started:
            progress.stop()


def resolve_with_progress(ref: str, verified: bool = False) -> ResolvedModel:
    """Resolve a reference, showing a progress bar if a bundled model has to be assembled first;
    with `verified`, a stored model's sha256 is checked against its manifest too."""
    with byte_progress(f"preparing {ref}") as progress:
        model = resolve(ref, progress=progress)
    if verified:
        verify(model)
    return model


def stats_line(stats: GenerationStats) -> str:
    return (
        f"prompt {stats.prompt_tokens} tok · generated {stats.generated_tokens} tok · "
        f"{stats.generation_tps:.1f} tok/s generation · {stats.prompt_tps:.1f} tok/s prompt · "
        f"first token {stats.time_to_first_token:.2f} s · peak memory {format_bytes(stats.peak_rss_bytes)}"
    )


def describe_model(model: ResolvedModel) -> str:
    return (
        f"{model.display_name} ({model.kind.value}, {model.quant}, {format_bytes(model.summary.file_size)})"
    )


def note(text: str) -> None:
    """A status line on stderr, kept out of the answer on stdout (never wrapped: scripts read it).
    Control characters are shown, not sent: notes carry file and model names."""
    click.echo(click.style(visible_controls(text), dim=True), err=True)


class StepBar:
    """A transient progress bar on stderr that opens on the first update and closes on `pause()`.

    huggingface_hub draws its own download bars on stderr; this bar is closed while they run, so the
    two never draw over each other.
    """

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def update(self, description: str, done: int, total: int | None) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(description, total=total)
        assert self._task is not None
        self._progress.update(self._task, description=description, completed=done, total=total)

    def pause(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def note(self, text: str) -> None:
        self.pause()
        note(text)


@contextlib.contextmanager
def step_bar() -> Iterator[StepBar]:
    bar = StepBar()
    try:
        yield bar
    finally:
        bar.pause()


class PlainTable(Table):
    """A Rich table whose text is shown as written: model names, paths and profile notes come from
    files, so "[" is not markup and control characters are made visible."""

    def __init__(self, *args, title: str | Text | None = None, **kwargs) -> None:
        super().__init__(*args, title=plain_text(title) if isinstance(title, str) else title, **kwargs)

    def add_row(self, *renderables: RenderableType | None, **kwargs) -> None:
        super().add_row(*(plain_text(r) if isinstance(r, str) else r for r in renderables), **kwargs)
