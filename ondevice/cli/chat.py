"""ondevice chat REF: a plain multi-turn chat in the terminal."""

from __future__ import annotations

import sys

import click

from ..chat_input import HELP, ChatCommand, parse_line, read_message
from ..errors import OndeviceError
from ..prompting import Message
from ..runtime.engine import Backend, WorkerDied, chat_turn, open_model
from ..runtime.protocol import Finished, GenerationParams, TokenEvent
from ..terminal_text import valid_utf8, visible_controls
from .common import describe_model, note, stats_line
from .options import USER_TEXT, LoadFlags, generation_options, load_options
from .progress import resolve_with_progress


@click.command()
@click.argument("ref")
@click.option(
    "--system", "system_prompt", type=USER_TEXT, default=None, help="System prompt for the conversation."
)
@click.option("--stats/--no-stats", default=True, help="Print a stats line after each answer.")
@generation_options
@load_options()
def chat(ref: str, system_prompt: str | None, stats: bool, params: GenerationParams, load: LoadFlags) -> None:
    """Chat with REF in the terminal. An instruct model uses its chat template; a base model a transcript.

    Type /help for the commands; a message between two \"\"\" lines may span several lines.
    """
    plan = load.plan()
    model = resolve_with_progress(ref, plan=plan)
    options = plan.options_for(model)
    note(f"loading {describe_model(model)}")
    with open_model(model, options) as worker:
        has_template = bool(worker.facts.chat_template)
        if not has_template:
            note("this model has no chat template: it sees the chat as a User:/Assistant: transcript")
        note('/help lists the commands; """ begins and ends a message of several lines')
        history: list[Message] = []
        while True:
            try:
                line, block = read_message(input)
            except EOFError:
                click.echo()
                return
            except KeyboardInterrupt:
                click.echo()
                note("(/exit or Ctrl-D leaves)")
                continue
            text, replaced = valid_utf8(line.strip())
            if replaced:
                note("that line had bytes that are not UTF-8; they were replaced with U+FFFD")
            if not text:
                continue
            command = parse_line(text, block)
            if command.command is ChatCommand.EXIT:
                return
            if command.command is ChatCommand.HELP:
                click.echo(HELP, err=True)
                continue
            if command.command is ChatCommand.RESET:
                history.clear()
                worker.reset()
                note("conversation reset")
                continue
            if command.command is ChatCommand.SYSTEM:
                # As Ollama does: the new system prompt applies to the conversation so far.
                system_prompt = command.text or None
                note(f"system prompt {'set' if system_prompt else 'cleared'}; the conversation goes on")
                continue
            if command.command is ChatCommand.UNKNOWN:
                note(f"unknown command {command.word}; /help lists the commands")
                continue
            history.append(Message("user", text))
            messages = ([Message("system", system_prompt)] if system_prompt else []) + history
            finished = _answer(worker, chat_turn(has_template, messages, params))
            if finished is None:
                history.pop()
                continue
            history.append(Message("assistant", finished.text))
            if stats:
                note(
                    stats_line(finished.stats)
                    + (" · stopped" if finished.stats.stop_reason == "cancelled" else "")
                )


def _answer(worker: Backend, request) -> Finished | None:
    """Stream one answer; Ctrl-C stops it and keeps what was said so far."""
    finished = None
    shown = visible_controls if sys.stdout.isatty() else str  # a pipe gets the exact text
    sys.stdout.write("model> ")
    try:
        for event in worker.stream(request):
            if isinstance(event, TokenEvent):
                sys.stdout.write(shown(event.text))
                sys.stdout.flush()
            elif isinstance(event, Finished):
                finished = event
    except KeyboardInterrupt:
        worker.cancel()
        finished = worker.drain()
    except OndeviceError as exc:
        if isinstance(exc, WorkerDied):
            raise  # the model is gone: the session cannot go on
        click.echo()
        note(f"error: {visible_controls(str(exc))} (the conversation goes on)")
        return None
    click.echo()
    return finished
