"""ondevice convert SOURCE [--outtype f16]"""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from converters.hf_to_gguf import OutType
from converters.hf_to_gguf import convert as convert_checkpoint

from ..units import format_bytes
from .common import err_console, note, print_json


@click.command()
@click.argument("source")
@click.option(
    "--outtype",
    type=click.Choice([t.value for t in OutType], case_sensitive=False),
    default=OutType.F16.value,
    show_default=True,
    help="Weight type of the GGUF (norms and biases stay F32).",
)
@click.option("--name", default=None, help="Store name [default: the checkpoint's directory name].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def convert(source: str, outtype: str, name: str | None, as_json: bool) -> None:
    """Convert SOURCE (a local Hugging Face checkpoint directory) to GGUF in the store; print its path."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"converting {source} to {outtype.upper()}", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = convert_checkpoint(source, outtype, name=name, progress=show)
    if as_json:
        print_json(result.as_dict())
        return
    note(
        f"{result.ref}: {result.architecture}, {format_bytes(result.size_bytes)}, "
        f"{result.bits_per_weight:.2f} bits/weight, {result.seconds:.1f} s"
    )
    click.echo(str(result.path))
