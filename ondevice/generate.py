"""One prompt through one or several models: the library behind `run` and `compare --plain`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .refs import ResolvedModel
from .runtime.engine import Backend, Event, open_model, single_turn
from .runtime.protocol import Finished, GenerationParams, LoadOptions, ModelFacts


@dataclass(frozen=True)
class RunResult:
    model: ResolvedModel
    facts: ModelFacts
    finished: Finished

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.display_name,
            "ref": self.model.ref,
            "kind": self.model.kind.value,
            "quantization": self.model.quant,
            "file_size_bytes": self.model.summary.file_size,
            "prompt_text": self.finished.prompt.text,
            "text": self.finished.text,
            "load_seconds": round(self.facts.load_seconds, 4),
            "threads": self.facts.n_threads,
            "n_ctx": self.facts.n_ctx,
            **self.finished.stats.as_dict(),
        }


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
        finished = None
        for event in worker.stream(request):
            if on_event:
                on_event(event)
            if isinstance(event, Finished):
                finished = event
        assert finished is not None
        return RunResult(model, worker.facts, finished)
