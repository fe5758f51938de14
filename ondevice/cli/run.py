"""ondevice run REF [PROMPT | - | --file FILE]"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..generate import run_prompt
from ..runtime.engine import Event
from ..runtime.protocol import GenerationParams, TokenEvent
from ..terminal_text import visible_controls
from .common import describe_model, note, split_lines, stats_line
from .options import PROMPT_FILE, USER_TEXT, LoadFlags, generation_options, load_options, read_prompt
from .output import Output, output_options
from .progress import resolve_with_progress


@click.command()
@click.argument("ref")
@click.argument("prompt", type=USER_TEXT, required=False)
@PROMPT_FILE
@generation_options
@load_options()
@click.option(
    "--system",
    type=USER_TEXT,
    default=None,
    help="System prompt (instruct models; a base model gets PROMPT raw).",
)
@output_options(json_help="Print one JSON object (text included) at the end.")
def run(
    ref: str,
    prompt: str | None,
    prompt_file: Path | None,
    system: str | None,
    params: GenerationParams,
    load: LoadFlags,
    out: Output,
) -> None:
    """Stream one answer to PROMPT from REF, then a stats line.

    An instruct model receives PROMPT inside its chat template; a base model continues it as raw text.
    PROMPT "-" (or none, with a pipe on standard input) reads the prompt from standard input; --file
    reads it from a file.
    """
    prompt = read_prompt(prompt, prompt_file)
    if prompt is None:
        raise click.UsageError("give a PROMPT, - to read it from standard input, or --file FILE")
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    plan = load.plan()
    model = resolve_with_progress(ref, plan=plan)
    options = plan.options_for(model)
    if not out.json:
        note(f"loading {describe_model(model)}")

    shown = visible_controls if sys.stdout.isatty() else str  # a pipe gets the exact text

    def show(event: Event) -> None:
        if isinstance(event, TokenEvent) and not out.json:
            sys.stdout.write(shown(event.text))
            sys.stdout.flush()

    result = run_prompt(model, prompt, params, options, on_event=show, system=system)

    def stats() -> None:
        click.echo()  # the answer streamed without its last newline
        for line in split_lines(result.facts.split):
            note(line)
        note(stats_line(result.finished.stats))

    out.emit(result.as_dict(), stats)
