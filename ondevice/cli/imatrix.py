"""ondevice imatrix REF [-f FILE] [--chunks N] [-c N] [-o FILE]"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from ..calibration_text import load_calibration_text
from ..imatrix import DEFAULT_CTX, MIN_CTX, run_imatrix
from ..imatrix_file import write_imatrix
from ..measure.results import ModelRecord
from .common import note
from .options import INT32_MAX, LoadFlags, load_options
from .output import Output, output_options
from .progress import progress_display, resolve_with_progress

DEFAULT_OUTPUT = "imatrix.gguf"  # llama-imatrix's


@click.command()
@click.argument("ref")
@click.option(
    "-f",
    "--text",
    "text_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Calibration text [default: the module docstrings of Python's standard library].",
)
@click.option(
    "--chunks",
    type=click.IntRange(1, INT32_MAX),
    default=None,
    help="Chunks to process [default: all of the text].",
)
@click.option(
    "-c",
    "--ctx-size",
    "n_ctx",
    type=click.IntRange(MIN_CTX, INT32_MAX),
    default=DEFAULT_CTX,
    show_default=True,
    help="Tokens per chunk (and context size).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="The matrix file to write (llama.cpp's GGUF imatrix format).",
)
@load_options(without=("n_ctx", "n_batch", "no_mmap"))
@output_options()
def imatrix(
    ref: str,
    text_path: Path | None,
    chunks: int | None,
    n_ctx: int,
    output: Path,
    load: LoadFlags,
    out: Output,
) -> None:
    """Compute REF's importance matrix over a calibration text, as llama-imatrix does; print its path.

    The text is cut into chunks of --ctx-size tokens, BOS first; for every weight matrix of every
    layer the mean squared activation entering each of its columns is collected, which
    `llama-quantize --imatrix` (and the low-bit and i-quant levels) use to spend precision where it
    matters. The file is llama.cpp's GGUF imatrix format: it works with llama.cpp's tools both ways.

    The default text is the module docstrings of this Python's standard library: every install has
    it (offline), it is prose about code as the models are asked, and it is another text than
    `ondevice eval`'s default (pydoc topics), so an eval does not measure on what the matrix was tuned
    on. Give your own with --text FILE.
    """
    if not output.parent.is_dir():  # found out now, not after the whole computation
        raise click.BadParameter(f"the folder {output.parent} does not exist", param_hint="'-o' / '--output'")
    text, dataset = load_calibration_text(text_path)
    plan = load.plan(n_ctx=n_ctx)
    model = resolve_with_progress(ref, verified=True, plan=plan)
    options = plan.options_for(model)
    with progress_display() as progress:
        run = run_imatrix(model, text, chunks, n_ctx, progress, dataset=dataset, options=options)
    path = write_imatrix(run.matrix, output)
    matrix = run.matrix

    def report() -> None:
        note(
            f"{model.display_name}: {len(matrix.entries)} weights, {matrix.chunk_count} "
            f"chunk{'' if matrix.chunk_count == 1 else 's'} of "
            f"{matrix.chunk_size} tokens from {dataset}, {run.seconds:.1f} s "
            f"({run.tokens_per_second:.0f} tokens/s)"
        )
        click.echo(str(path))

    out.emit(
        {
            "model": asdict(ModelRecord.of(model)),
            "path": str(path),
            "dataset": dataset,
            "entries": len(matrix.entries),
            "n_chunks": matrix.chunk_count,
            "n_ctx": matrix.chunk_size,
            "tokens": run.tokens,
            "seconds": round(run.seconds, 3),
            "tps": round(run.tokens_per_second, 1),
        },
        report,
    )
