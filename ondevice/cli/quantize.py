"""ondevice quantize REF --levels q8_0,q4_k_m,... [--imatrix FILE] [--tensor-type PATTERN=TYPE]"""

from __future__ import annotations

import click

from ..converters.quantize import DEFAULT_LADDER, parse_levels
from ..converters.quantize import quantize as quantize_ladder
from ..converters.quantize_options import make_overrides
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
    help="Comma-separated llama.cpp quantization levels to write (i-quants too: iq4_xs, iq2_xxs, ...).",
)
@click.option(
    "--imatrix",
    metavar="FILE|auto",
    default=None,
    help="Importance matrix (llama.cpp's GGUF or .dat) to quantize with; its files are named LEVEL-imat. "
    "`auto` computes one from the source over the default calibration text (32 chunks of 512 tokens; "
    "`ondevice imatrix` for another text or more) and keeps it in the store for the next time. "
    "Needed by iq1_*, iq2_*, iq3_xxs, iq3_xs and q2_k_s.",
)
@click.option(
    "--tensor-type",
    "tensor_types",
    metavar="PATTERN=TYPE",
    multiple=True,
    help="Quantize the tensors whose name the regex PATTERN finds to ggml TYPE (e.g. ffn_down=q8_0); "
    "repeatable. Files made with overrides are named LEVEL-custom.",
)
@click.option("--output-tensor-type", metavar="TYPE", default=None, help="ggml type of output.weight.")
@click.option("--token-embedding-type", metavar="TYPE", default=None, help="ggml type of token_embd.weight.")
@click.option("--allow-requantize", is_flag=True, help="Quantize a source that is already quantized.")
@click.option("--name", default=None, help="Store name for the outputs [default: the source's name].")
@click.option(
    "--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="Quantizer threads [default: all]."
)
@output_options()
def quantize(
    ref: str,
    levels: str,
    imatrix: str | None,
    tensor_types: tuple[str, ...],
    output_tensor_type: str | None,
    token_embedding_type: str | None,
    allow_requantize: bool,
    name: str | None,
    threads: int | None,
    out: Output,
) -> None:
    """Quantize REF to each level with llama.cpp's quantizer, into the store; print the paths written.

    With --imatrix the quantizer spends precision where the matrix says the activations are large; a
    level is then stored as LEVEL-imat, beside the plain LEVEL, so both can be measured side by side.
    """
    parse_levels(levels)  # a mistyped flag is reported before any model is read
    overrides = make_overrides(tensor_types, output_tensor_type, token_embedding_type)
    model = resolve_with_progress(ref)
    with progress_display() as progress:
        results = quantize_ladder(
            model,
            levels,
            allow_requantize=allow_requantize,
            name=name,
            threads=threads,
            progress=progress,
            imatrix=imatrix,
            overrides=overrides,
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
