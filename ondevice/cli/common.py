"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..planning.plan import LoadPlan, plan_load
from ..refs import ResolvedModel
from ..runtime.protocol import ExtraBufts, GenerationParams, GenerationStats
from ..terminal_text import plain_text, valid_utf8, visible_controls
from ..units import format_bytes

err_console = Console(stderr=True, highlight=False)


def generation_options(func: Callable) -> Callable:
    """--max-tokens, --temperature, --top-p, --top-k, --seed, --stop."""
    decorators = [
        click.option(
            "-n",
            "--max-tokens",
            type=click.IntRange(1, INT32_MAX),
            default=256,
            show_default=True,
            help="Most tokens to generate.",
        ),
        click.option(
            "-t",
            "--temperature",
            type=FiniteFloatRange(0),
            default=0.8,
            show_default=True,
            help="Sampling temperature; 0 is greedy.",
        ),
        click.option("--top-p", type=FiniteFloatRange(0, 1), default=0.95, show_default=True),
        click.option(
            "--top-k", type=click.IntRange(0, INT32_MAX), default=40, show_default=True, help="0 disables."
        ),
        click.option("--seed", type=int, default=None, help="Seed for sampling (random when unset)."),
        click.option(
            "--stop", type=USER_TEXT, multiple=True, help="Stop when this text appears (repeatable)."
        ),
        click.option("--ignore-eos", is_flag=True, help="Keep generating past end-of-text (for measuring)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def load_options(func: Callable) -> Callable:
    """--ctx, --threads, --gpu-layers, --batch, --no-mmap/--mmap, --extra-bufts, --profile, --force.

    The loading flags default to "not given" (None): the hardware profile fills them in, and a flag
    that is given beats the profile.
    """
    decorators = [
        click.option(
            "--ctx",
            "n_ctx",
            type=click.IntRange(16, INT32_MAX),
            default=None,
            help="Context size in tokens [default: from the profile, 4096 on a CPU laptop].",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1, MAX_THREADS),
            default=None,
            help="CPU threads [default: from the profile; physical cores].",
        ),
        click.option(
            "--gpu-layers",
            type=click.IntRange(-1, INT32_MAX),
            default=None,
            help="Layers to offload to the GPU; -1 for all [default: from the profile].",
        ),
        click.option(
            "--batch",
            "n_batch",
            type=click.IntRange(1, INT32_MAX),
            default=None,
            help="Prompt batch size [default: from the profile, 512].",
        ),
        click.option(
            "--no-mmap/--mmap",
            "no_mmap",
            default=None,
            help="Read the model into memory, or map it [default: from the profile, mapped].",
        ),
        click.option(
            "--extra-bufts",
            type=click.Choice([e.value for e in ExtraBufts]),
            default=None,
            help="llama.cpp's extra CPU buffer types (repacked or AMX kernels); off is llama.cpp's "
            "--no-repack; auto turns them off for good on a CPU where they crash (SIGILL, SIGSEGV) "
            "[default: from the profile, auto].",
        ),
        click.option(
            "--profile",
            "profile_name",
            default=None,
            metavar="NAME",
            help="Hardware profile (a name from `ondevice profiles list`, or a .toml file) "
            "[default: the one `ondevice doctor` picks].",
        ),
        click.option(
            "--force", is_flag=True, help="Load even when the memory pre-flight says the model will not fit."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


INT32_MAX = 2**31 - 1  # llama.cpp takes these as C ints: a larger number would wrap around
MAX_THREADS = 512  # GGML_MAX_N_THREADS


class FiniteFloatRange(click.FloatRange):
    """A float range that also refuses NaN and infinities (which slip through plain comparisons)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class UserText(click.ParamType):
    """Text from the command line, with bytes that are not UTF-8 replaced (and a note saying so)."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text, replaced = valid_utf8(str(value))
        if replaced:
            what = param.human_readable_name if param is not None else "text"
            note(f"{what} had bytes that are not UTF-8; they were replaced with U+FFFD")
        return text


USER_TEXT = UserText()


def params_from(kwargs: dict[str, Any]) -> GenerationParams:
    return GenerationParams(
        max_tokens=kwargs.pop("max_tokens"),
        temperature=kwargs.pop("temperature"),
        top_p=kwargs.pop("top_p"),
        top_k=kwargs.pop("top_k"),
        seed=kwargs.pop("seed"),
        stop=tuple(kwargs.pop("stop")),
        ignore_eos=kwargs.pop("ignore_eos"),
    )


def load_plan(kwargs: dict[str, Any]) -> LoadPlan:
    """Pop the loading flags, --profile and --force from a command's kwargs and plan the loads."""
    explicit = {
        "n_ctx": kwargs.pop("n_ctx", None),
        "n_threads": kwargs.pop("threads", None),
        "n_batch": kwargs.pop("n_batch", None),
        "n_gpu_layers": kwargs.pop("gpu_layers", None),
        "use_mmap": None,
        "extra_bufts": kwargs.pop("extra_bufts", None),
    }
    no_mmap = kwargs.pop("no_mmap", None)
    if no_mmap is not None:
        explicit["use_mmap"] = not no_mmap
    return plan_load(explicit, kwargs.pop("profile_name", None), kwargs.pop("force", False))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def stats_line(stats: GenerationStats) -> str:
    return (
        f"prompt {stats.prompt_tokens} tok · generated {stats.generated_tokens} tok · "
        f"{stats.generation_tps:.1f} tok/s generation · {stats.prompt_tps:.1f} tok/s prompt · "
        f"first token {stats.time_to_first_token:.2f} s · peak memory {format_bytes(stats.peak_rss_bytes)}"
    )


def describe_model(model: ResolvedModel) -> str:
    return (
        f"{model.display_name} ({model.kind.value}, {model.quant}, {format_bytes(model.summary.file_size)})"
    )


def note(text: str) -> None:
    """A status line on stderr, kept out of the answer on stdout (never wrapped: scripts read it).
    Control characters are shown, not sent: notes carry file and model names."""
    click.echo(click.style(visible_controls(text), dim=True), err=True)


class PlainTable(Table):
    """A Rich table whose text is shown as written: model names, paths and profile notes come from
    files, so "[" is not markup and control characters are made visible."""

    def __init__(self, *args, title: str | Text | None = None, **kwargs) -> None:
        super().__init__(*args, title=plain_text(title) if isinstance(title, str) else title, **kwargs)

    def add_row(self, *renderables: RenderableType | None, **kwargs) -> None:
        super().add_row(*(plain_text(r) if isinstance(r, str) else r for r in renderables), **kwargs)
