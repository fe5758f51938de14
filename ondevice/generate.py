"""One prompt through one or several models: the library behind `run` and `compare --plain`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .measure.results import ModelRecord
from .prompting import PromptMode
from .refs import ResolvedModel
from .runtime.engine import Backend, Event, open_model, single_turn
from .runtime.protocol import Finished, GenerationParams, LoadOptions, ModelFacts

log = logging.getLogger("ondevice.generate")


@dataclass(frozen=True)
class RunResult:
    model: ResolvedModel
    facts: ModelFacts
    finished: Finished

    def as_dict(self) -> dict[str, Any]:
        """The JSON of `run` and `compare`: the model as bench and eval describe it, then the answer."""
        return {
            "model": model_json(self.model),
            "prompt_text": self.finished.prompt.text,
            "text": self.finished.text,
            "load_seconds": round(self.facts.load_seconds, 4),
            "n_threads": self.facts.n_threads,
            "n_ctx": self.facts.n_ctx,
            **self.finished.stats.as_dict(),
            "split": [share.as_dict() for share in self.facts.split],
        }


def model_json(model: ResolvedModel) -> dict[str, Any]:
    """A model in every command's JSON: the same object bench and eval runs save."""
    return asdict(ModelRecord.of(model)) | {"kind": model.kind.value}


def run_prompt(
    model: ResolvedModel,
    prompt: str,
    params: GenerationParams,
    options: LoadOptions,
    on_event: Callable[[Event], None] | None = None,
    on_loaded: Callable[[Backend], None] | None = None,
    system: str | None = None,
) -> RunResult:
    """Load `model` in a worker, answer `prompt` (template or raw, by its kind), and close it."""
    with open_model(model, options) as worker:
        if on_loaded:
            on_loaded(worker)
        request = single_turn(model.kind, bool(worker.facts.chat_template), prompt, params, system)
        if system and request.mode is PromptMode.COMPLETION:
            log.warning(
                "%s gets the prompt as raw text (a %s model%s): --system is not used",
                model.display_name,
                model.kind.value,
                "" if worker.facts.chat_template else " without a chat template",
            )
        finished = None
        for event in worker.stream(request):
            if on_event:
                on_event(event)
            if isinstance(event, Finished):
                finished = event
        assert finished is not None
        return RunResult(model, worker.facts, finished)
