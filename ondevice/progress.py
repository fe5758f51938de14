"""Where a long job stands (download, convert, quantize, bench, eval): one event type for every job,
which the CLI draws as a bar and the TUI as a progress widget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Unit(str, Enum):
    """What `done` and `total` count."""

    STEPS = "steps"
    BYTES = "bytes"
    TENSORS = "tensors"


class Phase(str, Enum):
    """Who shows this step's progress."""

    COUNTED = "counted"  # the event's done of total: a display draws it
    # A library draws its own (huggingface_hub's download bars on stderr): a display steps aside until
    # the next counted event, so the two never draw over each other.
    HANDED_OFF = "handed_off"


@dataclass(frozen=True)
class Progress:
    """Where a long job stands: `done` of `total` `unit`s of `task`, now at `step`."""

    task: str  # the whole job, e.g. "quantize smollm2-135m-instruct" or a model's name in a bench
    step: str  # the current step, human-readable
    done: int = 0
    total: int | None = None  # None: not known (yet)
    unit: Unit = Unit.STEPS
    phase: Phase = Phase.COUNTED


ProgressFn = Callable[[Progress], None]
