"""Errors a user can cause. The CLI prints them as one line; anything else is a bug."""

from __future__ import annotations


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


class PromptError(OndeviceError):
    """A prompt cannot be run as given (too long for the context, empty, bad template)."""
