"""Perplexity, KL divergence and top-token agreement, by llama-perplexity's --kl-divergence method.

The reference's tokens cut the text into chunks of n_ctx tokens; each chunk starts with BOS (when
the model wants one) and only its second half is scored, so every scored token has at least
n_ctx/2 tokens of context. The reference runs once; its quantized log-probabilities go to a
temporary file that every model's worker reads (see runtime/logprobs.py), so the pipe carries only
per-position figures.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from threading import Event

from ..atomic import check_free_space
from ..gguf_summary import ArrayInfo
from ..progress import Progress, ProgressFn
from ..refs import ResolvedModel
from ..runtime.engine import Backend, open_model
from ..runtime.logprobs import ChunkScores, ReferenceFiles, concat
from ..runtime.protocol import LoadOptions, ScoreRequest
from ..texts import PYDOC_TOPICS, pydoc_topics, read_text
from . import MeasureError
from .machine import llama_cpp_version, machine_record
from .results import EvalRun, ModelRecord, QualityResult, Skipped
from .stats import mean_with_error, percentile, ppl, ppl_ratio, proportion, rms

DEFAULT_TEXT = PYDOC_TOPICS
METRICS = ("ppl", "kld", "top1", "follow")

log = logging.getLogger("ondevice.measure")


@dataclass(frozen=True)
class QualitySettings:
    n_ctx: int = 512
    n_chunks: int | None = None  # None: every whole chunk of the text
    metrics: tuple[str, ...] = ("ppl", "kld", "top1")
    options: LoadOptions = field(default_factory=LoadOptions)  # n_ctx is replaced by the one above

    @property
    def needs_reference(self) -> bool:
        return "kld" in self.metrics or "top1" in self.metrics

    @property
    def first(self) -> int:
        return self.n_ctx // 2

    @property
    def scored_per_chunk(self) -> int:
        return self.n_ctx - 1 - self.first


def load_text(path: Path | None = None) -> tuple[str, str]:
    """The evaluation text and a label for it: a file, or Python's bundled pydoc topics (offline)."""
    return (pydoc_topics(), DEFAULT_TEXT) if path is None else read_text(path, MeasureError)


def vocab_size(model: ResolvedModel) -> int | None:
    tokens = model.summary.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):
        return tokens.length
    return len(tokens) if isinstance(tokens, list) else None


def vocabulary_mismatch(
    model_vocab: int | None, reference_vocab: int | None, model: str, reference: str
) -> str:
    """Why `model` cannot be compared with the reference token by token ("" when it can)."""
    if model_vocab is None or reference_vocab is None or model_vocab == reference_vocab:
        return ""
    return (
        f"{model} has a vocabulary of {model_vocab} tokens but the reference {reference} has "
        f"{reference_vocab}; KL divergence needs models with the same tokenizer"
    )


def check_vocabularies(models: Sequence[ResolvedModel], reference: ResolvedModel) -> list[Skipped]:
    """KL divergence compares distributions over the same tokens. A model with another vocabulary is
    left out (its row says why) before any work; when that leaves none, there is nothing to measure."""
    skipped = []
    for model in models:
        why = vocabulary_mismatch(
            vocab_size(model), vocab_size(reference), model.display_name, reference.display_name
        )
        if why:
            skipped.append(Skipped(ModelRecord.of(model), why))
    if skipped and len(skipped) == len(models):
        raise MeasureError(skipped[0].reason)
    return skipped


def chunk_tokens(tokens: list[int], n_ctx: int, n_chunks: int | None, bos: int | None) -> list[list[int]]:
    """Whole chunks of n_ctx tokens, BOS first in each when the model wants one."""
    available = len(tokens) // n_ctx
    if available == 0:
        raise MeasureError(
            f"the text is {len(tokens)} tokens, shorter than one chunk of {n_ctx}; "
            "give a longer --text or a smaller --ctx"
        )
    count = available if n_chunks is None else min(n_chunks, available)
    chunks = [tokens[i * n_ctx : (i + 1) * n_ctx] for i in range(count)]
    if bos is not None:
        for chunk in chunks:
            chunk[0] = bos
    return chunks


def evaluate_quality(
    models: Sequence[ResolvedModel],
    reference: ResolvedModel | None,
    text: str,
    text_source: str,
    settings: QualitySettings,
    on_progress: ProgressFn | None = None,
    cancel: Event | None = None,
) -> EvalRun:
    """Score every model on the text; against the reference when one is given."""
    if settings.n_ctx < 8:
        raise MeasureError("--ctx must be at least 8 tokens for perplexity")
    if settings.needs_reference and reference is None:
        raise MeasureError("KL divergence and same-top need a reference model: pass --reference REF")
    skipped = check_vocabularies(models, reference) if reference is not None else []
    left_out = {s.model.path for s in skipped}
    models = [m for m in models if str(m.path) not in left_out]
    for s in skipped:
        log.warning("left out of the eval: %s", s.reason)
    options = replace(settings.options, n_ctx=settings.n_ctx)
    first_model = reference or models[0]
    run = EvalRun(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine=machine_record(),
        llama_cpp_version=llama_cpp_version(),
        text_source=text_source,
        n_ctx=settings.n_ctx,
        n_chunks=0,
        reference=ModelRecord.of(reference) if reference else None,
        reference_ppl=None,
        skipped=skipped,
    )
    workdir = Path(tempfile.mkdtemp(prefix="ondevice-eval-"))
    try:
        with open_model(first_model, options) as worker:
            chunks = _chunks_for(worker, text, settings)
            run.n_chunks = len(chunks)
            tracker = _Tracker(len(chunks) * (len(models) + (reference is not None)), on_progress, cancel)
            base = None
            if reference is not None:
                n_vocab = worker.facts.n_vocab
                rows = len(chunks) * settings.scored_per_chunk
                check_free_space(workdir, rows * (2 * n_vocab + 8), "the reference's log-probabilities")
                base = str(workdir / "reference")
                for suffix in (".steps", ".params"):
                    Path(base + suffix).touch()
                ref_scores = _score_all(worker, chunks, settings, tracker, save_path=base)
                run.reference_ppl = ppl(ref_scores.nll.tolist())
        for index, model in enumerate(models):
            with open_model(model, options) as worker:
                model_chunks = chunks
                if reference is None and index > 0:
                    # Perplexity alone: each model reads the text through its own tokenizer.
                    model_chunks = _chunks_for(worker, text, settings)
                    tracker.total += len(model_chunks) - len(chunks)
                why = (
                    ""
                    if reference is None
                    else vocabulary_mismatch(
                        worker.facts.n_vocab, n_vocab, model.display_name, reference.display_name
                    )
                )
                if why:  # the header did not say; llama.cpp did
                    log.warning("left out of the eval: %s", why)
                    run.skipped.append(Skipped(ModelRecord.of(model), why))
                    continue
                scores = _score_all(
                    worker,
                    model_chunks,
                    settings,
                    tracker,
                    compare_path=base,
                    reference=ref_scores if reference is not None else None,
                )
            run.quality.append(summarize(ModelRecord.of(model), scores, ref_scores if base else None))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return run


def _chunks_for(worker: Backend, text: str, settings: QualitySettings) -> list[list[int]]:
    tokens = worker.tokenize(text, add_special=True)
    bos = tokens[0] if worker.facts.add_bos and tokens else None  # add_special put it there
    return chunk_tokens(tokens, settings.n_ctx, settings.n_chunks, bos)


class _Tracker:
    def __init__(self, total: int, on_progress: ProgressFn | None, cancel: Event | None) -> None:
        self.total, self.done, self.on_progress, self.cancel = total, 0, on_progress, cancel

    def step(self, task: str, what: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise MeasureError("evaluation cancelled")
        if self.on_progress:
            self.on_progress(Progress(task, what, self.done, self.total))
        self.done += 1


def _score_all(
    worker: Backend,
    chunks: list[list[int]],
    settings: QualitySettings,
    tracker: _Tracker,
    save_path: str | None = None,
    compare_path: str | None = None,
    reference: ChunkScores | None = None,
) -> ChunkScores:
    n = settings.scored_per_chunk
    parts = []
    for i, chunk in enumerate(chunks):
        tracker.step(worker.label, f"chunk {i + 1}/{len(chunks)}")
        rows = slice(i * n, (i + 1) * n)
        request = ScoreRequest(
            tokens=tuple(chunk),
            first=settings.first,
            row=i * n,
            save_path=save_path,
            compare_path=compare_path,
            reference_nll=tuple(reference.nll[rows].tolist()) if reference is not None else (),
            reference_top=tuple(reference.top[rows].tolist()) if reference is not None else (),
        )
        parts.append(worker.score(request))
    return concat(parts)


def summarize(model: ModelRecord, scores: ChunkScores, reference: ChunkScores | None) -> QualityResult:
    """llama-perplexity's summary figures from the per-position scores."""
    nll = scores.nll.tolist()
    result = QualityResult(model=model, n_scored=len(nll), ppl=ppl(nll))
    if reference is None or scores.kld is None or scores.p_diff is None or scores.same_top is None:
        return result
    log_ratio, ratio = ppl_ratio(nll, reference.nll.tolist())
    # Not clipped at 0: the stored reference's rounding can dip below, as in llama-perplexity.
    kld = scores.kld.tolist()
    p_diff = scores.p_diff.tolist()
    return replace(
        result,
        ln_ppl_ratio=log_ratio,
        ppl_ratio=ratio,
        kld=mean_with_error(kld),
        kld_median=percentile(kld, 0.5),
        kld_p99=percentile(kld, 0.99),
        kld_max=max(kld),
        same_top=proportion(int(scores.same_top.sum()), len(nll)),
        delta_p=mean_with_error(p_diff),
        delta_p_rms=rms(p_diff),
    )


__all__ = ["METRICS", "QualitySettings", "ReferenceFiles", "evaluate_quality", "load_text"]
