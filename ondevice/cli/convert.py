"""ondevice convert SOURCE [--outtype f16]"""

from __future__ import annotations

import click

from ..converters.hf_to_gguf import OutType
from ..converters.hf_to_gguf import convert as convert_checkpoint
from ..manifest import Manifest
from ..units import format_bytes
from .common import note
from .output import Output, output_options
from .progress import progress_display


@click.command()
@click.argument("source")
@click.option(
    "--outtype",
    type=click.Choice([t.value for t in OutType], case_sensitive=False),
    default=OutType.F16.value,
    show_default=True,
    help="Weight type of the GGUF (norms and biases stay F32).",
)
@click.option(
    "--name",
    default=None,
    help="Store name [default: the repo's name for hf:, else the checkpoint's directory name].",
)
@output_options()
def convert(source: str, outtype: str, name: str | None, out: Output) -> None:
    """Convert SOURCE to GGUF in the store; print its path.

    SOURCE is hf:ORG/REPO[@REV] (a Hugging Face Hub model repo at a branch, tag or commit, downloaded
    into the Hugging Face cache first: safetensors only, no remote code; HF_ENDPOINT, HF_HOME, HF_TOKEN
    and HF_HUB_OFFLINE apply) or a local Hugging Face checkpoint directory. The manifest records the
    commit a Hub revision resolved to.

    SOURCE can also be a GGUF (FILE.gguf or bundled:NAME): it is dequantized to --outtype (e.g. the
    bundled Q4 models to F16, to seed a quantization ladder or serve as a KLD reference).
    """
    with progress_display() as progress:
        result = convert_checkpoint(source, outtype, name=name, progress=progress, notify=progress.note)
    manifest = Manifest.from_json(result.path.with_suffix(".json").read_text(encoding="utf-8"), result.path)

    def report() -> None:
        for line in result.notes:
            note(line)
        note(
            f"{result.ref}: {result.architecture}, {format_bytes(result.size_bytes)}, "
            f"{result.bits_per_weight:.2f} bits/weight, {result.seconds:.1f} s"
            + (f", from {manifest.source}" if manifest.revision else "")
        )
        click.echo(str(result.path))

    out.emit({**result.as_dict(), "source": manifest.source, "revision": manifest.revision}, report)
