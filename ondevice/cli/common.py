"""Options and output helpers shared by the commands."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from ..refs import ResolvedModel, resolve
from ..runtime.protocol import GenerationParams, GenerationStats, LoadOptions
from ..units import format_bytes

err_console = Console(stderr=True, highlight=False)


def generation_options(func: Callable) -> Callable:
    """--max-tokens, --temperature, --top-p, --top-k, --seed, --stop."""
    decorators = [
        click.option(
            "-n",
            "--max-tokens",
            type=click.IntRange(1),
            default=256,
            show_default=True,
            help="Most tokens to generate.",
        ),
        click.option(
            "-t",
            "--temperature",
            type=click.FloatRange(0),
            default=0.8,
            show_default=True,
            help="Sampling temperature; 0 is greedy.",
        ),
        click.option("--top-p", type=click.FloatRange(0, 1), default=0.95, show_default=True),
        click.option("--top-k", type=click.IntRange(0), default=40, show_default=True, help="0 disables."),
        click.option("--seed", type=int, default=None, help="Seed for sampling (random when unset)."),
        click.option("--stop", multiple=True, help="Stop when this text appears (repeatable)."),
        click.option("--ignore-eos", is_flag=True, help="Keep generating past end-of-text (for measuring)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def load_options(func: Callable) -> Callable:
    """--ctx, --threads, --gpu-layers, --batch, --no-mmap."""
    decorators = [
        click.option(
            "--ctx",
            "n_ctx",
            type=click.IntRange(16),
            default=4096,
            show_default=True,
            help="Context size in tokens.",
        ),
        click.option(
            "--threads", type=click.IntRange(1), default=None, help="CPU threads [default: physical cores]."
        ),
        click.option(
            "--gpu-layers",
            type=int,
            default=0,
            show_default=True,
            help="Layers to offload to the GPU; -1 for all.",
        ),
        click.option(
            "--batch",
            "n_batch",
            type=click.IntRange(1),
            default=512,
            show_default=True,
            help="Prompt batch size.",
        ),
        click.option("--no-mmap", is_flag=True, help="Read the model into memory instead of mapping it."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def params_from(kwargs: dict[str, Any]) -> GenerationParams:
    return GenerationParams(
        max_tokens=kwargs.pop("max_tokens"),
        temperature=kwargs.pop("temperature"),
        top_p=kwargs.pop("top_p"),
        top_k=kwargs.pop("top_k"),
        seed=kwargs.pop("seed"),
        stop=tuple(kwargs.pop("stop")),
        ignore_eos=kwargs.pop("ignore_eos"),
    )


def load_from(kwargs: dict[str, Any]) -> LoadOptions:
    return LoadOptions(
        n_ctx=kwargs.pop("n_ctx"),
        n_threads=kwargs.pop("threads"),
        n_batch=kwargs.pop("n_batch"),
        n_gpu_layers=kwargs.pop("gpu_layers"),
        use_mmap=not kwargs.pop("no_mmap"),
    )


@contextlib.contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for long file work; yields a (done, total) callback."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def resolve_with_progress(ref: str) -> ResolvedModel:
    """Resolve a reference, showing a progress bar if a bundled model has to be assembled first."""
    with byte_progress(f"preparing {ref}") as progress:
        return resolve(ref, progress=progress)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


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
    """A status line on stderr, kept out of the answer on stdout (never wrapped: scripts read it)."""
    click.echo(click.style(text, dim=True), err=True)
