"""Option decorators shared by the commands: each group of flags reaches the command as one object
(`params: GenerationParams`, `load: LoadFlags`), so no command pops flags out of its kwargs."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..planning.plan import LoadPlan, plan_load
from ..runtime.protocol import ExtraBufts, GenerationParams
from ..runtime.rpc_client import RpcError, parse_endpoints
from ..terminal_text import valid_utf8
from .common import note

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


class RpcServers(click.ParamType):
    """--rpc HOST:PORT[,HOST:PORT...]: llama.cpp RPC servers, as a tuple of "HOST:PORT"."""

    name = "HOST:PORT[,...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(str(e) for e in parse_endpoints(str(value)))
        except RpcError as exc:
            self.fail(str(exc), param, ctx)


class TensorSplit(click.ParamType):
    """--tensor-split 3,1: llama.cpp's share of the offloaded layers per device."""

    name = "N,N,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            shares = tuple(float(v) for v in str(value).replace("/", ",").split(","))
        except ValueError:
            self.fail(f"{value!r} is not a list of numbers, e.g. 3,1", param, ctx)
        if any(not math.isfinite(v) or v < 0 for v in shares) or not any(shares):
            self.fail(f"{value!r}: shares are numbers >= 0, at least one above 0", param, ctx)
        return shares


MAX_PROMPT_BYTES = 64 << 20  # far past any context; a bigger file or pipe is a mistake, not a prompt


def read_prompt(text: str | None, file: Path | None, *, stdin_when_missing: bool = True) -> str | None:
    """The prompt as llm and llama.cpp take it: the text given, "-" (or, with `stdin_when_missing`,
    no text and a pipe on stdin) for standard input, or the contents of --file."""
    if file is not None:
        if text is not None:
            raise click.UsageError("give the prompt once: as text, or with --file")
        with open(file, "rb") as handle:
            return _prompt_text(handle.read(MAX_PROMPT_BYTES + 1), str(file))
    if text == "-" or (text is None and stdin_when_missing and not sys.stdin.isatty()):
        return _prompt_text(sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1), "standard input")
    return text


def _prompt_text(data: bytes, where: str) -> str:
    if len(data) > MAX_PROMPT_BYTES:
        raise click.UsageError(f"the prompt from {where} is over {MAX_PROMPT_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        note(f"the prompt from {where} had bytes that are not UTF-8; they were replaced with U+FFFD")
        return data.decode("utf-8", "replace")


PROMPT_FILE = click.option(
    "-f",
    "--file",
    "prompt_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the prompt from this file (as llama.cpp's -f).",
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _apply(options: list[Decorator], func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(options):
        func = option(func)
    return func


_GENERATION = [
    click.option(
        "-n",
        "--max-tokens",
        type=click.IntRange(1, INT32_MAX),
        default=256,
        show_default=True,
        help="Most tokens to generate.",
    ),
    click.option(
        "--temperature",
        "--temp",
        "temperature",
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
    click.option("--stop", type=USER_TEXT, multiple=True, help="Stop when this text appears (repeatable)."),
    click.option("--ignore-eos", is_flag=True, help="Keep generating past end-of-text (for measuring)."),
]


def generation_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--max-tokens, --temperature, --top-p, --top-k, --seed, --stop, --ignore-eos, handed to the
    command as `params: GenerationParams`."""

    @functools.wraps(func)
    def command(
        *args: Any,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        seed: int | None,
        stop: tuple[str, ...],
        ignore_eos: bool,
        **kwargs: Any,
    ) -> Any:
        params = GenerationParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=tuple(stop),
            ignore_eos=ignore_eos,
        )
        return func(*args, params=params, **kwargs)

    return _apply(_GENERATION, command)


@dataclass(frozen=True)
class LoadFlags:
    """The loading flags as given (None: not given, the profile decides), --profile and --force."""

    explicit: dict[str, Any] = field(default_factory=dict)  # LoadOptions' field names
    profile_name: str | None = None
    force: bool = False

    def plan(self, **fixed: Any) -> LoadPlan:
        """Plan the loads; `fixed` are settings the command itself decides (e.g. bench's use_mmap)."""
        return plan_load({**self.explicit, **fixed}, self.profile_name, self.force)


# Each loading flag: its click option and the LoadOptions field it sets (None: not a load option).
_LOADING: dict[str, tuple[Decorator, str | None]] = {
    "n_ctx": (
        click.option(
            "--ctx",
            "n_ctx",
            type=click.IntRange(16, INT32_MAX),
            default=None,
            help="Context size in tokens [default: from the profile, 4096 on a CPU laptop].",
        ),
        "n_ctx",
    ),
    "threads": (
        click.option(
            "-t",
            "--threads",
            type=click.IntRange(1, MAX_THREADS),
            default=None,
            help="CPU threads [default: from the profile; physical cores].",
        ),
        "n_threads",
    ),
    "gpu_layers": (
        click.option(
            "--gpu-layers",
            type=click.IntRange(-1, INT32_MAX),
            default=None,
            help="Layers to offload to the GPU; -1 for all [default: from the profile].",
        ),
        "n_gpu_layers",
    ),
    "n_batch": (
        click.option(
            "--batch",
            "n_batch",
            type=click.IntRange(1, INT32_MAX),
            default=None,
            help="Prompt batch size [default: from the profile, 512].",
        ),
        "n_batch",
    ),
    "no_mmap": (
        click.option(
            "--no-mmap/--mmap",
            "no_mmap",
            default=None,
            help="Read the model into memory, or map it [default: from the profile, mapped].",
        ),
        "use_mmap",
    ),
    "extra_bufts": (
        click.option(
            "--extra-bufts",
            type=click.Choice([e.value for e in ExtraBufts]),
            default=None,
            help="llama.cpp's extra CPU buffer types (repacked or AMX kernels); off is llama.cpp's "
            "--no-repack; auto turns them off for good on a CPU where they crash (SIGILL, SIGSEGV) "
            "[default: from the profile, auto].",
        ),
        "extra_bufts",
    ),
    "rpc": (
        click.option(
            "--rpc",
            type=RpcServers(),
            default=None,
            help="llama.cpp RPC servers (`ondevice rpc-server` on other machines) that take layers; "
            "with it --gpu-layers defaults to -1, all layers on the servers [default: from the profile, "
            "none].",
        ),
        "rpc_servers",
    ),
    "tensor_split": (
        click.option(
            "--tensor-split",
            type=TensorSplit(),
            default=None,
            help="Share of the offloaded layers per device, e.g. 3,1 (the RPC servers in --rpc order) "
            "[default: in proportion to each server's free memory].",
        ),
        "tensor_split",
    ),
    "profile_name": (
        click.option(
            "--profile",
            "profile_name",
            default=None,
            metavar="NAME",
            help="Hardware profile (a name from `ondevice profiles list`, or a .toml file) "
            "[default: the one `ondevice doctor` picks].",
        ),
        None,
    ),
    "force": (
        click.option(
            "--force", is_flag=True, help="Load even when the memory pre-flight says the model will not fit."
        ),
        None,
    ),
}


def load_options(*, without: tuple[str, ...] = ()) -> Decorator:
    """--ctx, --threads, --gpu-layers, --batch, --no-mmap/--mmap, --extra-bufts, --rpc, --tensor-split,
    --profile, --force
    (less those named in `without`, which the command defines its own way), handed to the command
    as `load: LoadFlags`.

    The loading flags default to "not given" (None): the hardware profile fills them in, and a flag
    that is given beats the profile.
    """
    unknown = set(without) - set(_LOADING)
    if unknown:
        raise ValueError(f"no loading option {sorted(unknown)}")
    kept = {name: spec for name, spec in _LOADING.items() if name not in without}

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in kept}
            explicit: dict[str, Any] = {}
            for name, (_, target) in kept.items():
                if target is None:
                    continue
                value = given[name]
                if name == "no_mmap" and value is not None:
                    value = not value  # the flag says --no-mmap; the option is use_mmap
                explicit[target] = value
            flags = LoadFlags(explicit, given.get("profile_name"), bool(given.get("force", False)))
            return func(*args, load=flags, **kwargs)

        return _apply([option for option, _ in kept.values()], command)

    return decorate
