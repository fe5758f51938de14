"""ondevice eval REF... --reference REF"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from ..measure.bench import BenchSettings
from ..measure.evaluate import EvalSettings, evaluate
from ..measure.runs import save_run
from .common import note
from .options import INT32_MAX, LoadFlags, load_options
from .output import Format, Output, output_options
from .progress import progress_display, resolve_with_progress


@click.command(name="eval")
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--reference",
    "reference_ref",
    default=None,
    help="The model the others are compared with (e.g. the F16).",
)
@click.option(
    "--text",
    "text_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Text for perplexity and KLD [default: Python's pydoc topics].",
)
@click.option(
    "--ctx",
    "n_ctx",
    type=click.IntRange(8),
    default=512,
    show_default=True,
    help="Tokens per chunk (and context size).",
)
@click.option(
    "--chunks",
    type=click.IntRange(1, INT32_MAX),
    default=None,
    help="Chunks to score [default: all of the text].",
)
@click.option(
    "--metrics",
    default=None,
    help="Comma-separated: ppl, kld, top1, follow [default: ppl,kld,top1 with a reference, else ppl].",
)
@click.option(
    "--prompts",
    "prompts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Instruction-following prompts (JSON or JSON lines) [default: the built-in set].",
)
@click.option(
    "--follow-limit",
    type=click.IntRange(1, INT32_MAX),
    default=None,
    help="Use only the first N follow prompts.",
)
@click.option(
    "--follow-tokens",
    type=click.IntRange(1, INT32_MAX),
    default=256,
    show_default=True,
    help="Most tokens per follow answer.",
)
@click.option(
    "--speed",
    is_flag=True,
    help="Also run a short bench (pp512, tg128, 3 repetitions) for the comparison table.",
)
@load_options(without=("n_ctx", "no_mmap"))
@click.option("--no-save", is_flag=True, help="Do not keep this run in the store's history.")
@output_options(Format.MD, Format.JSON, Format.CSV, json_help="Same as --format json.")
def eval_(
    refs: tuple[str, ...],
    reference_ref: str | None,
    text_path: Path | None,
    n_ctx: int,
    chunks: int | None,
    metrics: str | None,
    prompts_path: Path | None,
    follow_limit: int | None,
    follow_tokens: int,
    speed: bool,
    no_save: bool,
    load: LoadFlags,
    out: Output,
) -> None:
    """Perplexity, KL divergence from a reference, same-top rate, Δp and PPL ratio; instruction following.

    llama-perplexity's --kl-divergence method: chunks of --ctx tokens, BOS first, the second half of
    each scored. The reference runs once per call. `--metrics follow` scores verifiable instructions
    (IFEval-style strict and loose accuracy): instruct models get their chat template, base models
    the raw prompt.
    """
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
    chosen = chosen or (("ppl", "kld", "top1") if reference_ref else ("ppl",))
    plan = load.plan(n_ctx=n_ctx, use_mmap=False)
    options = plan.options
    settings = EvalSettings(
        metrics=chosen,
        n_ctx=n_ctx,
        n_chunks=chunks,
        text_path=text_path,
        options=options,
        prompts_path=prompts_path,
        follow_limit=follow_limit,
        follow_tokens=follow_tokens,
        # pp512 and tg128 need more context than a small --ctx chunk gives.
        speed=BenchSettings(repetitions=3, threads=(options.n_threads,), options=replace(options, n_ctx=1024))
        if speed
        else None,
    )
    settings.check(reference_ref is not None)
    models = [resolve_with_progress(ref, verified=True, plan=plan) for ref in refs]
    reference = resolve_with_progress(reference_ref, verified=True) if reference_ref else None
    for model in [*models, *([reference] if reference else [])]:  # loaded one at a time
        plan.options_for(model)
    with progress_display() as progress:
        run = evaluate(models, reference, settings, progress)
    if not no_save:
        note(f"saved to {save_run(run)}")
    out.emit(run.as_dict(), csv=run.to_csv, markdown=run.to_markdown)
