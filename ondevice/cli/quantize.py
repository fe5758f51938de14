"""ondevice quantize REF --levels q8_0,q4_k_m,..."""

from __future__ import annotations

import click

from ..converters.quantize import DEFAULT_LADDER
from ..converters.quantize import quantize as quantize_ladder
from ..units import format_bytes
from .common import note
from .options import MAX_THREADS
from .output import Output, output_options
from .progress import progress_display, resolve_with_progress


@click.command()
@click.argument("ref")
@click.option(
    "--levels",
    default=",".join(DEFAULT_LADDER),
    show_default=True,
    help="Comma-separated llama.cpp quantization levels to write.",
)
@click.option("--allow-requantize", is_flag=True, help="Quantize a source that is already quantized.")
@click.option("--name", default=None, help="Store name for the outputs [default: the source's name].")
@click.option(
    "--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="Quantizer threads [default: all]."
)
@output_options()
def quantize(
    ref: str, levels: str, allow_requantize: bool, name: str | None, threads: int | None, out: Output
) -> None:
    """Quantize REF to each level with llama.cpp's quantizer, into the store; print the paths written."""
    model = resolve_with_progress(ref)
    with progress_display() as progress:
        results = quantize_ladder(
            model, levels, allow_requantize=allow_requantize, name=name, threads=threads, progress=progress
        )

    def report() -> None:
        for result in results:
            note(
                f"{result.ref}: {format_bytes(result.size_bytes)}, "
                f"{result.bits_per_weight:.2f} bits/weight, {result.seconds:.1f} s"
            )
            for line in result.notes:
                note(f"  {line}")
            click.echo(str(result.path))

    out.emit({"source": model.display_name, "outputs": [r.as_dict() for r in results]}, report)
