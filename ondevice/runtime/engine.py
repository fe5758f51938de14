"""The runtime's front door: open a model, phrase a request; what consumers import.

Every model runs in its own worker process (`WorkerModel`, in `worker_model`); consumers (CLI,
measurements, UI) use it only through the `Backend` interface (in `backend`), exported here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WorkerDied
from ..kinds import Kind
from ..prompting import TRANSCRIPT_STOPS, Message, PromptMode
from .backend import Backend, Event
from .protocol import GenerateRequest, GenerationParams, LoadOptions
from .worker_model import WorkerModel

if TYPE_CHECKING:
    from ..refs import ResolvedModel

__all__ = ["Backend", "Event", "WorkerDied", "WorkerModel", "chat_turn", "open_model", "single_turn"]


def single_turn(
    kind: Kind, has_template: bool, text: str, params: GenerationParams, system: str | None = None
) -> GenerateRequest:
    """One prompt: an instruct model gets it as a user turn in its template (after `system`, if
    given); a base model gets the text raw, since it has no notion of a system prompt."""
    if kind is Kind.INSTRUCT and has_template:
        messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
        return GenerateRequest(messages, PromptMode.CHAT_TEMPLATE, params)
    return GenerateRequest((Message("user", text),), PromptMode.COMPLETION, params)


def chat_turn(has_template: bool, messages: list[Message], params: GenerationParams) -> GenerateRequest:
    """A conversation: the model's template when it has one, else a plain transcript frame."""
    if has_template:
        return GenerateRequest(tuple(messages), PromptMode.CHAT_TEMPLATE, params)
    params = replace(params, stop=tuple(dict.fromkeys(params.stop + TRANSCRIPT_STOPS)))
    return GenerateRequest(tuple(messages), PromptMode.TRANSCRIPT, params)


def open_model(
    model: ResolvedModel | str | Path, options: LoadOptions | None = None, label: str | None = None
) -> Backend:
    """Load a model (a resolved reference, or a GGUF path) in its own worker process: the one way the
    CLI, the measurements and the UI open a model."""
    if isinstance(model, str | Path):
        return WorkerModel(model, options, label)
    return WorkerModel(model.path, options, label or model.display_name)
