"""ondevice run REF PROMPT"""

from __future__ import annotations

import sys

import click

from ..generate import run_prompt
from ..runtime.engine import Event
from ..runtime.protocol import TokenEvent
from ..terminal_text import visible_controls
from .common import (
    USER_TEXT,
    describe_model,
    generation_options,
    load_options,
    load_plan,
    note,
    params_from,
    print_json,
    stats_line,
)
from .progress import resolve_with_progress


@click.command()
@click.argument("ref")
@click.argument("prompt", type=USER_TEXT)
@generation_options
@load_options
@click.option(
    "--system",
    type=USER_TEXT,
    default=None,
    help="System prompt (instruct models; a base model gets PROMPT raw).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (text included) at the end.")
def run(ref: str, prompt: str, system: str | None, as_json: bool, **kwargs) -> None:
    """Stream one answer to PROMPT from REF, then a stats line.

    An instruct model receives PROMPT inside its chat template; a base model continues it as raw text.
    """
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    params, plan = params_from(kwargs), load_plan(kwargs)
    model = resolve_with_progress(ref)
    options = plan.options_for(model)
    if not as_json:
        note(f"loading {describe_model(model)}")

    shown = visible_controls if sys.stdout.isatty() else str  # a pipe gets the exact text

    def show(event: Event) -> None:
        if isinstance(event, TokenEvent) and not as_json:
            sys.stdout.write(shown(event.text))
            sys.stdout.flush()

    result = run_prompt(model, prompt, params, options, on_event=show, system=system)
    if as_json:
        print_json(result.as_dict())
    else:
        click.echo()
        note(stats_line(result.finished.stats))
