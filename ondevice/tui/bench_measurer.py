"""How the bench screen runs `bench` and `eval`: the measurement library, as the CLI calls it.

Textual-free: the screen runs a `Measure` in a thread worker with a cancel event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..measure.bench import BenchSettings, OpenModel, open_worker, run_bench
from ..measure.evaluate import EvalSettings, evaluate
from ..measure.results import BenchRun, EvalRun
from ..measure.runs import Run
from ..planning.hardware import Hardware, detect_hardware
from ..planning.plan import require_fit_now
from ..progress import ProgressFn
from ..refs import ResolvedModel, resolve
from ..runtime.protocol import LoadOptions

Measure = Callable[[ProgressFn, threading.Event], Run]  # one run, as the screen's worker calls it


class Measurer:
    """How the bench screen reaches the measurement library: references are resolved, each model is
    checked against the memory free now (the compare's models stay loaded, and a measurement loads
    its own copy without mmap), then `run_bench` or `evaluate` runs on them, as the CLI does.

    Tests replace `resolve_ref`, `open_model` and `machine` (or subclass) to measure fake models.
    """

    def __init__(
        self,
        options: LoadOptions | None = None,
        resolve_ref: Callable[[str], ResolvedModel] = resolve,
        open_model: OpenModel = open_worker,
        machine: Callable[[], Hardware] = detect_hardware,
    ) -> None:
        # Measurements load without mmap, so the worker's peak RSS counts the weights.
        self.options = replace(options or LoadOptions(), use_mmap=False)
        self.resolve_ref = resolve_ref
        self.open_model = open_model
        self.machine = machine

    def preflight(self, models: Sequence[ResolvedModel], options: LoadOptions) -> None:
        """Refuse, with the numbers, a model that will not fit next to what is loaded (one at a time)."""
        hw = self.machine()
        advice = "measure fewer models, lower ctx, or drop models from the compare (F4)"
        for model in models:
            require_fit_now(model.display_name, model.summary, options, advice, hw)

    def bench(
        self,
        refs: Sequence[str],
        settings: BenchSettings,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> BenchRun:
        models = [self.resolve_ref(ref) for ref in refs]
        self.preflight(models, settings.options)
        return run_bench(models, settings, on_progress, cancel, self.open_model)

    def evaluate(
        self,
        refs: Sequence[str],
        reference: str | None,
        settings: EvalSettings,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> EvalRun:
        models = [self.resolve_ref(ref) for ref in refs]
        ref_model = self.resolve_ref(reference) if reference else None
        self.preflight(
            [*models, *([ref_model] if ref_model else [])], replace(settings.options, n_ctx=settings.n_ctx)
        )
        return evaluate(models, ref_model, settings, on_progress, cancel)


def bench_settings(options: LoadOptions, n_prompt: int, n_gen: int, repetitions: int) -> BenchSettings:
    """llama-bench's tests with the session's load options; the context grows to fit the tests."""
    needed = max(n_prompt, n_gen + 1)
    return BenchSettings(
        n_prompt, n_gen, repetitions, options=replace(options, n_ctx=max(options.n_ctx, needed))
    )


def eval_metrics(text: str, has_reference: bool) -> tuple[str, ...]:
    """The metrics typed in the box; empty means the CLI's default (ppl, kld, top1 with a reference)."""
    chosen = tuple(m.strip() for m in text.replace(" ", ",").split(",") if m.strip())
    return chosen or (("ppl", "kld", "top1") if has_reference else ("ppl",))
