"""Helpers shared by `bench` and `eval`: option surgery on load_options, and --threads."""

from __future__ import annotations

from collections.abc import Callable

import click

from .common import load_options


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
