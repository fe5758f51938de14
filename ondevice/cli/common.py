"""Shared pieces of the commands: notes, model descriptions, stats lines and plain tables."""

from __future__ import annotations

import sys

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..refs import ResolvedModel
from ..runtime.protocol import DeviceShare, GenerationStats
from ..terminal_text import plain_text, visible_controls
from ..units import format_bytes

err_console = Console(stderr=True, highlight=False)

PIPE_WIDTH = 1000  # wide enough that no table in a pipe is squeezed, wrapped mid-value or cut with "…"


def stdout_console() -> Console:
    """The console tables go to: the terminal's width on a terminal; in a pipe or a file, as wide as
    each table needs (Rich would assume 80 columns and squeeze names and numbers to fit)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def split_lines(split: tuple[DeviceShare, ...]) -> list[str]:
    """What llama.cpp put on each device, when RPC servers took part (one line per device)."""
    return [
        f"on {share.device} ({share.description}): weights {format_bytes(share.model_bytes)}, "
        f"KV cache {format_bytes(share.kv_cache_bytes)}, compute {format_bytes(share.compute_bytes)}"
        for share in split
    ]


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


class PlainTable(Table):
    """A Rich table whose text is shown as written: model names, paths and profile notes come from
    files, so "[" is not markup and control characters are made visible."""

    def __init__(self, *args, title: str | Text | None = None, **kwargs) -> None:
        super().__init__(*args, title=plain_text(title) if isinstance(title, str) else title, **kwargs)

    def add_row(self, *renderables: RenderableType | None, **kwargs) -> None:
        super().add_row(*(plain_text(r) if isinstance(r, str) else r for r in renderables), **kwargs)
