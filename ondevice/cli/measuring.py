"""Helpers shared by `bench` and `eval`: thread-count lists."""

from __future__ import annotations

import click


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
