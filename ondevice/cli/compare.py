"""ondevice compare --plain REF... --prompt TEXT"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..generate import RunResult, run_prompt
from ..units import format_bytes
from .common import (
    describe_model,
    generation_options,
    load_from,
    load_options,
    note,
    params_from,
    print_json,
    resolve_with_progress,
)


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option("--prompt", "-p", required=True, help="The prompt every model answers.")
@click.option(
    "--plain", is_flag=True, help="Print the answers side by side (the interactive view comes later)."
)
@generation_options
@load_options
@click.option("--system", default=None, help="System prompt for the instruct models.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per model.")
def compare(
    refs: tuple[str, ...], prompt: str, plain: bool, system: str | None, as_json: bool, **kwargs
) -> None:
    """Answer one prompt with each of REFS, one model after another, and show the answers side by side.

    Models run one at a time so that each has the whole machine and the speed figures compare fairly.
    """
    if not plain and not as_json:
        note("the interactive compare view is not built yet; showing --plain output")
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="--prompt")
    if len(refs) > 4:
        raise click.BadParameter("compare takes at most 4 models", param_hint="REFS")
    params, options = params_from(kwargs), load_from(kwargs)
    models = [resolve_with_progress(ref) for ref in refs]
    results: list[RunResult] = []
    for model in models:
        if not as_json:
            note(f"running {describe_model(model)}")
        results.append(run_prompt(model, prompt, params, options, system=system))
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    Console().print(side_by_side(prompt, results))


def side_by_side(prompt: str, results: list[RunResult]) -> Table:
    """One column per model: what it is, what it said, and how fast."""
    # Text objects, not strings: model output and "[base]" badges must not be read as Rich markup.
    table = Table(title=Text(f"Prompt: {prompt}"), title_justify="left", show_lines=True, expand=True)
    for r in results:
        header = Text(f"{r.model.display_name}\n", style="bold")
        kind = r.model.kind.value
        header.append(f"[{kind}]", style="green" if kind == "instruct" else "cyan")
        header.append(f" {r.model.quant} · {format_bytes(r.model.summary.file_size)}")
        table.add_column(header, ratio=1, overflow="fold")
    table.add_row(*(Text(r.finished.text.strip() or "(no text)") for r in results))
    table.add_row(*(Text(_stats_cell(r), style="dim") for r in results))
    return table


def _stats_cell(result: RunResult) -> str:
    s = result.finished.stats
    return (
        f"generation {s.generation_tps:.1f} tok/s\n"
        f"prompt {s.prompt_tps:.1f} tok/s\n"
        f"first token {s.time_to_first_token:.2f} s\n"
        f"tokens {s.prompt_tokens} in, {s.generated_tokens} out ({s.stop_reason})\n"
        f"peak memory {format_bytes(s.peak_rss_bytes)}\n"
        f"load {result.facts.load_seconds:.2f} s"
    )
