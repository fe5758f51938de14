"""ondevice bench REF..."""

from __future__ import annotations

import click

from ..measure.bench import BenchSettings, run_bench
from ..measure.runs import save_run
from .common import note
from .measuring import parse_threads
from .options import INT32_MAX, LoadFlags, load_options
from .output import Format, Output, output_options
from .progress import progress_display, resolve_with_progress


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "-p",
    "--n-prompt",
    type=click.IntRange(0, INT32_MAX),
    default=512,
    show_default=True,
    help="Prompt tokens (pp); 0 skips.",
)
@click.option(
    "-n",
    "--n-gen",
    type=click.IntRange(0, INT32_MAX),
    default=128,
    show_default=True,
    help="Generated tokens (tg); 0 skips.",
)
@click.option(
    "-r",
    "--repetitions",
    type=click.IntRange(1, INT32_MAX),
    default=5,
    show_default=True,
    help="Repetitions of each test.",
)
@load_options(without=("threads", "no_mmap"))
@click.option(
    "-t",
    "--threads",
    "threads_list",
    default=None,
    help="Thread counts, e.g. 4 or 2,4,8 (a sweep) [default: physical cores].",
)
@click.option("--no-save", is_flag=True, help="Do not keep this run in the store's history.")
@output_options(Format.MD, Format.JSON, Format.CSV, json_help="Same as --format json.")
def bench(
    refs: tuple[str, ...],
    n_prompt: int,
    n_gen: int,
    repetitions: int,
    threads_list: str | None,
    no_save: bool,
    load: LoadFlags,
    out: Output,
) -> None:
    """Measure prompt processing (pp) and generation (tg) speed, load time, first-token time and memory.

    llama-bench's method: a warm-up, then -r repetitions of pp (one batch of -p random tokens) and tg
    (-n single-token decodes), the KV cache cleared before each; tokens/s as mean ± stddev. Models
    load without mmap so the worker's peak RSS counts the weights.
    """
    threads = parse_threads(threads_list)
    plan = load.plan(use_mmap=False)
    settings = BenchSettings(n_prompt, n_gen, repetitions, threads, plan.options)
    settings.check()
    models = [resolve_with_progress(ref, verified=True, plan=plan) for ref in refs]
    for model in models:  # one at a time, so each has its own memory pre-flight
        plan.options_for(model)
    with progress_display() as progress:
        run = run_bench(models, settings, progress)
    if not no_save:
        note(f"saved to {save_run(run)}")
    out.emit(run.as_dict(), csv=run.to_csv, markdown=run.to_markdown)
