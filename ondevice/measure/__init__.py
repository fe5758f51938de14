"""Measurement: speed and memory (llama-bench's method), quality against a reference
(llama-perplexity's --kl-divergence method) and instruction following (verifiable instructions)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OndeviceError


class MeasureError(OndeviceError):
    """A measurement cannot run as asked (settings, text, models that do not match)."""


@dataclass(frozen=True)
class Progress:
    """A step of a long measurement, for progress displays: `done` of `total` steps of `task`."""

    task: str
    step: str
    done: int
    total: int
