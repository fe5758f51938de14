"""`ondevice eval` as a library call: quality against a reference, instruction following, and speed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from threading import Event

from ..progress import ProgressFn
from ..refs import ResolvedModel
from ..runtime.protocol import GenerationParams, LoadOptions
from . import MeasureError
from .bench import BenchSettings, run_bench
from .follow import evaluate_follow, load_prompts
from .machine import llama_cpp_version, machine_record
from .quality import METRICS, QualitySettings, evaluate_quality, load_text
from .results import EvalRun


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] = ("ppl", "kld", "top1")
    n_ctx: int = 512
    n_chunks: int | None = None
    text_path: Path | None = None
    options: LoadOptions = field(default_factory=lambda: LoadOptions(use_mmap=False))
    prompts_path: Path | None = None
    follow_limit: int | None = None
    follow_tokens: int = 256
    speed: BenchSettings | None = None  # also run a short bench of each model

    def check(self, has_reference: bool) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise MeasureError(
                f"unknown metrics {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}"
            )
        if ("kld" in self.metrics or "top1" in self.metrics) and not has_reference:
            raise MeasureError("kld and top1 compare with a reference model: pass --reference REF")


def evaluate(
    models: Sequence[ResolvedModel],
    reference: ResolvedModel | None,
    settings: EvalSettings,
    on_progress: ProgressFn | None = None,
    cancel: Event | None = None,
) -> EvalRun:
    """Run every requested measurement; inputs are checked before any model loads."""
    settings.check(reference is not None)
    quality_metrics = tuple(m for m in settings.metrics if m != "follow")
    prompts = (
        load_prompts(settings.prompts_path, settings.follow_limit) if "follow" in settings.metrics else []
    )
    if quality_metrics:
        text, source = load_text(settings.text_path)
        quality = QualitySettings(settings.n_ctx, settings.n_chunks, quality_metrics, settings.options)
        run = evaluate_quality(models, reference, text, source, quality, on_progress, cancel)
    else:
        run = EvalRun(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            machine=machine_record(),
            llama_cpp_version=llama_cpp_version(),
            text_source=None,
            n_ctx=None,
            n_chunks=None,
            reference=None,
            reference_ppl=None,
        )
    if prompts:
        params = GenerationParams(max_tokens=settings.follow_tokens, temperature=0)
        # The answers need room for the prompt and follow_tokens, whatever the chunk size is.
        options = replace(settings.options, n_ctx=max(2048, settings.follow_tokens + 512))
        run.follow = evaluate_follow(models, prompts, params, options, on_progress, cancel)
    if settings.speed is not None:
        run.speed = run_bench(models, settings.speed, on_progress, cancel).results
    return run
