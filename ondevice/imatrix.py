"""Computing an importance matrix over a calibration text, as `llama-imatrix` does, in our worker; and
the store's cache of them, for `quantize --imatrix auto`.

The text is tokenized once (BOS first, as llama.cpp does) and cut into whole chunks of n_ctx tokens,
each starting with BOS when the model wants one; each chunk is evaluated on an empty KV cache by a
worker whose eval callback sums the squared activations entering every `blk.*` weight (runtime/
llama_imatrix). The chunks' sums and counts add up here, in float64.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from threading import Event

import numpy as np

from .calibration_text import load_calibration_text
from .imatrix_file import ImatrixEntry, ImatrixError, ImportanceMatrix, read_imatrix, write_imatrix
from .manifest import sha256_file
from .progress import Progress, ProgressFn
from .refs import ResolvedModel, resolve
from .runtime.engine import open_model
from .runtime.protocol import ImatrixRequest, LoadOptions
from .store import IMATRIX_KEY_DIGITS, IMATRIX_SUFFIX, Store

DEFAULT_CTX = 512  # llama-imatrix's chunk size
MIN_CTX = 16  # llama.cpp skips matrix multiplications of fewer rows
CONTEXT_STEP = 256


@dataclass(frozen=True)
class ImatrixRun:
    """A computed matrix and how long the chunks took (the model's load not counted)."""

    matrix: ImportanceMatrix
    seconds: float

    @property
    def tokens(self) -> int:
        return self.matrix.chunk_count * self.matrix.chunk_size

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def run_imatrix(
    ref: str | ResolvedModel,
    text: str | None = None,
    chunks: int | None = None,
    n_ctx: int = DEFAULT_CTX,
    progress: ProgressFn | None = None,
    *,
    dataset: str | None = None,
    options: LoadOptions | None = None,
    cancel: Event | None = None,
    store: Store | None = None,
) -> ImatrixRun:
    """The importance matrix of model `ref` over `text` (None: the standard library's module
    docstrings, see calibration_text), from its first `chunks` chunks of `n_ctx` tokens (None: all),
    with the time the chunks took. `dataset` names the text in the matrix (a file's name; the default
    text names itself)."""
    if n_ctx < MIN_CTX:
        raise ImatrixError(f"the chunk size must be at least {MIN_CTX} tokens, not {n_ctx}")
    if chunks is not None and chunks < 1:
        raise ImatrixError(f"--chunks must be at least 1, not {chunks}")
    if text is None:
        text, default_name = load_calibration_text(None)
        dataset = dataset or default_name
    if not text.strip():
        raise ImatrixError("the calibration text is empty")
    model = ref if isinstance(ref, ResolvedModel) else resolve(ref, store or Store())
    task = f"imatrix {model.display_name}"
    # One decode per chunk; llama.cpp rounds a context up to a multiple of 256, so that is asked for.
    context = -(-n_ctx // CONTEXT_STEP) * CONTEXT_STEP
    load = replace(
        options or LoadOptions(), n_ctx=context, n_batch=n_ctx, n_ubatch=None, collect_imatrix=True
    )
    with open_model(model, load) as worker:
        tokens = worker.tokenize(text, add_special=True)
        if len(tokens) < n_ctx:
            raise ImatrixError(
                f"the calibration text is {len(tokens)} tokens, shorter than one chunk of {n_ctx}; "
                "give a longer text or a smaller --ctx-size"
            )
        count = len(tokens) // n_ctx if chunks is None else min(chunks, len(tokens) // n_ctx)
        bos = tokens[0] if worker.facts.add_bos else None  # add_special put it there
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        started = time.perf_counter()
        for i in range(count):
            if cancel is not None and cancel.is_set():
                raise ImatrixError("computing the importance matrix was cancelled")
            if progress:
                progress(Progress(task, f"chunk {i + 1}/{count}", i, count))
            chunk = tokens[i * n_ctx : (i + 1) * n_ctx]
            if bos is not None:
                chunk[0] = bos
            for name, part in worker.imatrix(ImatrixRequest(tuple(chunk))).items():
                if name in sums:
                    sums[name] += part.sums
                    counts[name] += part.counts
                else:
                    sums[name] = part.sums.astype(np.float64)
                    counts[name] = part.counts.astype(np.float64)
        seconds = time.perf_counter() - started
    if progress:
        progress(Progress(task, "done", count, count))
    if not sums:
        raise ImatrixError(f"{model.display_name}: no weight matrix saw the text (is it a language model?)")
    entries = {
        name: ImatrixEntry(sums[name].astype(np.float32), counts[name].astype(np.float32)) for name in sums
    }
    matrix = ImportanceMatrix(entries, (dataset or "text",), chunk_count=count, chunk_size=n_ctx)
    return ImatrixRun(matrix, seconds)


def cache_key(source_sha256: str, text: str, chunks: int | None, n_ctx: int) -> str:
    """What a cached matrix depends on: the source's bytes, the text's, the chunks and their size."""
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    spec = f"imatrix-v1\n{source_sha256}\n{text_sha}\n{chunks if chunks is not None else 'all'}\n{n_ctx}"
    return hashlib.sha256(spec.encode()).hexdigest()[:IMATRIX_KEY_DIGITS]


def cache_path(model: ResolvedModel, key: str, store: Store | None = None) -> Path:
    """Beside the source in the store (QUANT.KEY.imatrix: the store's scan passes it by, and removing
    the source removes it); a file outside the store caches in the store's root, under imatrix/."""
    if model.manifest is not None:
        return model.path.with_name(f"{model.manifest.quant}.{key}{IMATRIX_SUFFIX}")
    return (store or Store()).models.parent / "imatrix" / f"{key}{IMATRIX_SUFFIX}"


def cached_imatrix(
    source: str | ResolvedModel,
    text: str | None = None,
    chunks: int | None = None,
    n_ctx: int = DEFAULT_CTX,
    progress: ProgressFn | None = None,
    *,
    dataset: str | None = None,
    options: LoadOptions | None = None,
    store: Store | None = None,
) -> Path:
    """The path of `source`'s importance matrix over `text` (None: the default text), computed once
    and kept in the store, keyed by the source's sha256, the text's sha256, `chunks` and `n_ctx`."""
    store = store or Store()
    model = source if isinstance(source, ResolvedModel) else resolve(source, store)
    if text is None:
        text, default_name = load_calibration_text(None)
        dataset = dataset or default_name
    digest = model.manifest.sha256 if model.manifest is not None and model.manifest.sha256 else ""
    path = cache_path(model, cache_key(digest or sha256_file(model.path), text, chunks, n_ctx), store)
    if path.is_file():
        try:
            read_imatrix(path)
            return path
        except ImatrixError:
            pass  # a damaged cache is computed again
    matrix = run_imatrix(model, text, chunks, n_ctx, progress, dataset=dataset, options=options).matrix
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_imatrix(matrix, path)
