"""Helpers shared by `bench` and `eval`: option surgery on load_options and a progress display."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click

from ..measure import Progress as Step
from .common import load_options, step_bar


def load_options_without(*names: str) -> Callable[[Callable], Callable]:
    """load_options, less the options a measuring command defines its own way (by parameter name)."""

    def decorate(func: Callable) -> Callable:
        func = load_options(func)
        func.__click_params__ = [p for p in func.__click_params__ if p.name not in names]  # type: ignore[attr-defined]
        return func

    return decorate


def parse_threads(value: str | None) -> tuple[int | None, ...]:
    """ "4" or "1,2,4": one run per thread count."""
    if value is None or not value.strip():
        return (None,)
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of numbers", param_hint="--threads"
        ) from None
    if not counts or any(n < 1 for n in counts):
        raise click.BadParameter("thread counts must be at least 1", param_hint="--threads")
    return tuple(dict.fromkeys(counts))


@contextlib.contextmanager
def step_progress(enabled: bool = True) -> Iterator[Callable[[Step], None]]:
    """A transient progress bar on stderr, fed with measurement steps."""
    if not enabled:
        yield lambda step: None
        return
    with step_bar() as bar:
        yield lambda step: bar.update(f"{step.task}: {step.step}", step.done, step.total)
