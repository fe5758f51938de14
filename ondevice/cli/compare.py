"""ondevice compare REF... (the terminal UI), or --plain REF... --prompt TEXT"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import OndeviceError
from ..generate import RunResult, model_json, run_prompt
from ..refs import ResolvedModel
from ..runtime.protocol import GenerationParams
from ..terminal_text import plain_text
from ..units import format_bytes
from .common import describe_model, note
from .options import PROMPT_FILE, USER_TEXT, LoadFlags, generation_options, load_options, read_prompt
from .output import Output, output_options
from .progress import resolve_with_progress


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--prompt",
    "-p",
    type=USER_TEXT,
    default=None,
    help="The prompt every model answers (needed with --plain); - reads it from standard input.",
)
@PROMPT_FILE
@click.option("--plain", is_flag=True, help="Print the answers side by side instead of opening the UI.")
@generation_options
@load_options()
@click.option("--system", type=USER_TEXT, default=None, help="System prompt for the instruct models.")
@output_options(json_help="Print a JSON list, one object per model.")
def compare(
    refs: tuple[str, ...],
    prompt: str | None,
    prompt_file: Path | None,
    plain: bool,
    system: str | None,
    params: GenerationParams,
    load: LoadFlags,
    out: Output,
) -> None:
    """Compare REFS (1 to 4 models) side by side on the same prompt.

    Opens the terminal UI: type a prompt, and every model streams its answer into its own column
    with live tokens/s and memory. With --plain (or --json), answers PROMPT once per model, one
    model after another so each has the whole machine, and prints the answers side by side. Without
    a terminal (a pipe, a file, CI) the UI cannot open: a prompt is then answered as with --plain.
    """
    if len(refs) > 4:
        raise click.BadParameter("compare takes at most 4 models", param_hint="REFS")
    prompt = read_prompt(prompt, prompt_file, stdin_when_missing=False)
    if not plain and not out.json and not (sys.stdin.isatty() and sys.stdout.isatty()):
        if prompt is None:
            raise click.UsageError(
                "the compare view needs a terminal; without one, give --plain --prompt TEXT"
            )
        note("not a terminal: printing the answers as --plain does")
        plain = True
    plan = load.plan()
    models = [resolve_with_progress(ref, plan=plan) for ref in refs]
    if not plain and not out.json:
        from .tui_launch import launch_compare  # textual loads only for the UI

        options = plan.options_for(*models)  # the UI holds every model at once

        launch_compare(models, params, options, system)
        return
    if prompt is None or not prompt.strip():
        raise click.BadParameter("--plain needs a non-empty --prompt", param_hint="--prompt")
    for model in models:  # --plain runs one model at a time: each must fit on its own
        options = plan.options_for(model)
    results: list[RunResult | FailedRun] = []
    for model in models:
        if not out.json:
            note(f"running {describe_model(model)}")
        try:
            results.append(run_prompt(model, prompt, params, options, system=system))
        except OndeviceError as exc:  # one model's failure leaves the others' answers standing
            results.append(FailedRun(model, str(exc)))
    out.emit([r.as_dict() for r in results], lambda: Console().print(side_by_side(prompt, results)))
    failed = [r for r in results if isinstance(r, FailedRun)]
    if failed:
        raise OndeviceError(
            f"{len(failed)} of {len(results)} models failed: "
            + "; ".join(f"{r.model.display_name}: {r.error}" for r in failed)
        )


@dataclass(frozen=True)
class FailedRun:
    """A model that could not answer (its worker died, its prompt did not fit)."""

    model: ResolvedModel
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"model": model_json(self.model), "error": self.error}


def side_by_side(prompt: str, results: list[RunResult | FailedRun]) -> Table:
    """One column per model: what it is, what it said, and how fast."""
    # Text objects, not strings: model output and "[base]" badges must not be read as Rich markup.
    table = Table(title=Text(f"Prompt: {prompt}"), title_justify="left", show_lines=True, expand=True)
    for r in results:
        header = Text(f"{r.model.display_name}\n", style="bold")
        kind = r.model.kind.value
        header.append(f"[{kind}]", style="green" if kind == "instruct" else "cyan")
        header.append(f" {r.model.quant} · {format_bytes(r.model.summary.file_size)}")
        table.add_column(header, ratio=1, overflow="fold")
    table.add_row(
        *(
            plain_text(f"failed: {r.error}")
            if isinstance(r, FailedRun)
            else plain_text(r.finished.text.strip() or "(no text)")
            for r in results
        )
    )
    table.add_row(*(Text("" if isinstance(r, FailedRun) else _stats_cell(r), style="dim") for r in results))
    return table


def _stats_cell(result: RunResult) -> str:
    s = result.finished.stats
    return (
        f"generation {s.generation_tps:.1f} tok/s\n"
        f"prompt {s.prompt_tps:.1f} tok/s\n"
        f"first token {s.time_to_first_token:.2f} s\n"
        f"tokens {s.prompt_tokens} in, {s.generated_tokens} out ({s.stop_reason.value})\n"
        f"peak memory {format_bytes(s.peak_rss_bytes)}\n"
        f"load {result.facts.load_seconds:.2f} s"
    )
