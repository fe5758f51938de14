"""Speed and memory, by llama-bench's method, inside the model worker.

Per model and thread count: a warm-up pp and a one-token tg, then r repetitions of pp (one prompt
batch of random token ids) and r of tg (single-token decodes), the KV cache cleared before each.
The model loads without mmap, so the worker's peak RSS counts the weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from threading import Event

from ..progress import Progress, ProgressFn
from ..refs import ResolvedModel
from ..runtime.engine import Backend, open_model
from ..runtime.protocol import BenchTest, BenchTiming, LoadOptions
from . import MeasureError
from .machine import backend_name, llama_cpp_version, machine_record
from .results import BenchResult, BenchRun, DeviceSplit, Memory, ModelRecord, Rate
from .stats import Estimate, mean, median, stddev

OpenModel = Callable[[ResolvedModel, LoadOptions], Backend]


def open_worker(model: ResolvedModel, options: LoadOptions) -> Backend:
    """The default way a benchmark opens a model: llama.cpp in its own worker process."""
    return open_model(model, options)


@dataclass(frozen=True)
class BenchSettings:
    n_prompt: int = 512
    n_gen: int = 128
    repetitions: int = 5
    threads: tuple[int | None, ...] = (None,)  # several make a sweep; None: the loader's default
    options: LoadOptions = field(default_factory=lambda: LoadOptions(use_mmap=False))
    warmup: bool = True

    def check(self) -> None:
        if self.n_prompt < 0 or self.n_gen < 0 or self.n_prompt + self.n_gen == 0:
            raise MeasureError("nothing to measure: give -p or -n a positive number of tokens")
        if self.repetitions < 1:
            raise MeasureError("-r must be at least 1")
        needed = max(self.n_prompt, self.n_gen + 1 if self.n_gen else 0)
        if needed > self.options.n_ctx:
            raise MeasureError(f"the tests need a context of {needed} tokens; --ctx is {self.options.n_ctx}")

    @property
    def steps_per_model(self) -> int:
        tests = (self.n_prompt > 0) + (self.n_gen > 0)
        return 1 + len(self.threads) * tests * (self.repetitions + self.warmup)


def run_bench(
    models: Sequence[ResolvedModel],
    settings: BenchSettings | None = None,
    on_progress: ProgressFn | None = None,
    cancel: Event | None = None,
    open_model: OpenModel = open_worker,
) -> BenchRun:
    """Benchmark each model in turn (one at a time, so each has the whole machine).

    `open_model` opens a model's worker; tests pass a stand-in with the same `bench` method.
    """
    settings = settings or BenchSettings()
    settings.check()
    run = BenchRun(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine=machine_record(),
        llama_cpp_version=llama_cpp_version(),
    )
    for model in models:
        run.results.extend(bench_model(model, settings, on_progress, cancel, open_model))
    return run


def bench_model(
    model: ResolvedModel,
    settings: BenchSettings,
    on_progress: ProgressFn | None = None,
    cancel: Event | None = None,
    open_model: OpenModel = open_worker,
) -> list[BenchResult]:
    """All thread counts of one model, loaded once."""
    total, done = settings.steps_per_model, 0

    def step(what: str) -> None:
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise MeasureError("benchmark cancelled")
        if on_progress:
            on_progress(Progress(model.display_name, what, done, total))
        done += 1

    step("loading")
    options = replace(settings.options, n_threads=settings.threads[0] or settings.options.n_threads)
    results = []
    with open_model(model, options) as worker:
        facts = worker.facts
        for threads in settings.threads:
            timings: dict[BenchTest, list[BenchTiming]] = {BenchTest.PP: [], BenchTest.TG: []}
            for test, n in ((BenchTest.PP, settings.n_prompt), (BenchTest.TG, settings.n_gen)):
                if n <= 0:
                    continue
                if settings.warmup:
                    step(f"{threads or facts.n_threads} threads: warm-up {test.value}")
                    worker.bench(test, n if test is BenchTest.PP else 1, threads, seed=12345)
                for rep in range(settings.repetitions):
                    shown = f"{test.value}{n} {rep + 1}/{settings.repetitions}"
                    step(f"{threads or facts.n_threads} threads: {shown}")
                    timings[test].append(worker.bench(test, n, threads, seed=rep))
            pp, tg = timings[BenchTest.PP], timings[BenchTest.TG]
            every = pp + tg
            results.append(
                BenchResult(
                    model=ModelRecord.of(model),
                    backend=backend_name(facts.system_info) + (",RPC" if facts.split else ""),
                    n_threads=every[0].n_threads,
                    n_batch=min(settings.options.n_batch, facts.n_ctx),
                    n_gpu_layers=facts.n_gpu_layers,
                    n_ctx=facts.n_ctx,
                    n_prompt=settings.n_prompt,
                    n_gen=settings.n_gen,
                    repetitions=settings.repetitions,
                    pp=rate(pp),
                    tg=rate(tg),
                    time_to_first_token_seconds=(
                        Estimate(mean(ft := [t.first_token_seconds for t in pp]), stddev(ft)) if pp else None
                    ),
                    load_seconds=facts.load_seconds,
                    memory=Memory(
                        peak_rss_bytes=max(max(t.peak_rss_bytes for t in every), worker.rss_bytes()),
                        model_buffer_bytes=facts.model_buffer_bytes,
                        kv_cache_bytes=facts.kv_cache_bytes,
                        compute_buffer_bytes=facts.compute_buffer_bytes,
                    ),
                    split=tuple(DeviceSplit(**share.as_dict()) for share in facts.split),
                )
            )
    if on_progress:
        on_progress(Progress(model.display_name, "done", total, total))
    return results


def rate(timings: list[BenchTiming]) -> Rate | None:
    """Tokens per second of each repetition, summarised as llama-bench does (mean ± stddev)."""
    if not timings:
        return None
    samples = tuple(t.n_tokens / t.seconds for t in timings if t.seconds > 0)
    if not samples:
        return None
    return Rate(mean=mean(samples), stddev=stddev(samples), median=median(samples), samples=samples)
