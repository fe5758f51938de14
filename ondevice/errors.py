"""Errors a user can cause. The CLI prints them as one line; anything else is a bug."""

from __future__ import annotations

import signal


class OndeviceError(Exception):
    """Base for errors caused by input, environment or a model file, not by a bug."""


class GGUFError(OndeviceError):
    """A file is not a GGUF llama.cpp can safely load."""


class UnknownReferenceError(OndeviceError):
    """A model reference names nothing we can find."""


class StoreError(OndeviceError):
    """The model store cannot do what was asked."""


class WorkerError(OndeviceError):
    """The model worker process failed or died."""


class WorkerDied(WorkerError):
    """The worker process ended while working (the exit status says how)."""

    def __init__(self, message: str, exitcode: int | None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(-self.exitcode).name if self.exitcode and self.exitcode < 0 else None


class PromptError(OndeviceError):
    """A prompt cannot be run as given (too long for the context, empty, bad template)."""
