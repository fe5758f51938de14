"""ondevice bench REF..."""

from __future__ import annotations

import click

from ..measure.bench import BenchSettings, run_bench
from ..measure.runs import save_run
from .common import INT32_MAX, load_plan, note, print_json
from .measuring import load_options_without, parse_threads
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
@load_options_without("threads", "no_mmap")
@click.option(
    "--threads",
    "threads_list",
    default=None,
    help="Thread counts, e.g. 4 or 2,4,8 (a sweep) [default: physical cores].",
)
@click.option("--format", "fmt", type=click.Choice(["md", "json", "csv"]), default="md", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--no-save", is_flag=True, help="Do not keep this run in the store's history.")
def bench(
    refs: tuple[str, ...],
    n_prompt: int,
    n_gen: int,
    repetitions: int,
    threads_list: str | None,
    fmt: str,
    as_json: bool,
    no_save: bool,
    **kwargs,
) -> None:
    """Measure prompt processing (pp) and generation (tg) speed, load time, first-token time and memory.

    llama-bench's method: a warm-up, then -r repetitions of pp (one batch of -p random tokens) and tg
    (-n single-token decodes), the KV cache cleared before each; tokens/s as mean ± stddev. Models
    load without mmap so the worker's peak RSS counts the weights.
    """
    threads = parse_threads(threads_list)
    kwargs.update(threads=None, no_mmap=True)
    plan = load_plan(kwargs)
    settings = BenchSettings(n_prompt, n_gen, repetitions, threads, plan.options)
    settings.check()
    models = [resolve_with_progress(ref, verified=True) for ref in refs]
    for model in models:  # one at a time, so each has its own memory pre-flight
        plan.options_for(model)
    with progress_display() as progress:
        run = run_bench(models, settings, progress)
    if not no_save:
        note(f"saved to {save_run(run)}")
    fmt = "json" if as_json else fmt
    if fmt == "json":
        print_json(run.as_dict())
    elif fmt == "csv":
        click.echo(run.to_csv(), nl=False)
    else:
        click.echo(run.to_markdown(), nl=False)
