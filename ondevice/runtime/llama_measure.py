"""The measurements a model worker makes: llama-bench's pp and tg tests, and scoring a chunk of tokens
for perplexity and KL divergence (llama-perplexity's method).

Worker process only (it imports llama_cpp). numpy is imported only when scoring.
"""

from __future__ import annotations

import functools
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import llama_cpp

from ..errors import PromptError, WorkerError
from .llama_log import last_log_error
from .memory import peak_rss_bytes
from .protocol import BenchRequest, BenchTest, BenchTiming, ScoreRequest

if TYPE_CHECKING:
    from .llama_session import LlamaSession
    from .logprobs import ChunkScores

_SCORE_BLOCK = 16  # rows of logits scored at a time


def bench(session: LlamaSession, request: BenchRequest) -> BenchTiming:
    """One llama-bench test (pp or tg) on an empty KV cache, timed around the decode calls only."""
    test = BenchTest(request.test)
    needed = request.n_tokens + (1 if test is BenchTest.TG else 0)
    if request.n_tokens < 1 or needed > session.n_ctx:
        raise PromptError(
            f"{test.value}{request.n_tokens} needs a context of {needed} tokens but it holds "
            f"{session.n_ctx}; raise --ctx"
        )
    threads = request.n_threads or session.facts.n_threads
    rng = random.Random(request.seed)
    n_vocab, bos = session.facts.n_vocab, llama_cpp.llama_vocab_bos(session.vocab)
    # As llama-bench: random ids, BOS first when the model wants one.
    tokens = [rng.randrange(n_vocab) for _ in range(request.n_tokens)]
    if session.facts.add_bos and bos >= 0:
        tokens[0] = bos
    llama_cpp.llama_set_n_threads(session.ctx, threads, threads)
    session.reset()
    first_token = 0.0
    try:
        if test is BenchTest.PP:
            seconds, first_token = _bench_prompt(session, tokens)
        else:
            seconds = _bench_generation(session, tokens)
    finally:
        session.reset()
        llama_cpp.llama_set_n_threads(session.ctx, session.facts.n_threads, session.facts.n_threads)
    return BenchTiming(test, request.n_tokens, threads, seconds, first_token, peak_rss_bytes())


def _bench_prompt(session: LlamaSession, tokens: list[int]) -> tuple[float, float]:
    arrays = [
        (llama_cpp.llama_token * len(chunk))(*chunk)
        for chunk in (tokens[i : i + session.n_batch] for i in range(0, len(tokens), session.n_batch))
    ]
    greedy = llama_cpp.llama_sampler_init_greedy()
    try:
        started = time.perf_counter()
        for array in arrays:
            session.decode(llama_cpp.llama_batch_get_one(array, len(array)))
        llama_cpp.llama_synchronize(session.ctx)
        seconds = time.perf_counter() - started
        llama_cpp.llama_sampler_sample(greedy, session.ctx, -1)
        first_token = time.perf_counter() - started
    finally:
        llama_cpp.llama_sampler_free(greedy)
    return seconds, first_token


def _bench_generation(session: LlamaSession, tokens: list[int]) -> float:
    one = (llama_cpp.llama_token * 1)()
    batch = llama_cpp.llama_batch_get_one(one, 1)
    ctx, decode, synchronize = session.ctx, llama_cpp.llama_decode, llama_cpp.llama_synchronize
    started = time.perf_counter()
    for token in tokens:
        one[0] = token
        status = decode(ctx, batch)
        if status != 0:
            raise WorkerError(f"llama_decode failed with status {status}: {last_log_error()}")
        synchronize(ctx)
    return time.perf_counter() - started


def score(session: LlamaSession, request: ScoreRequest) -> ChunkScores:
    """Evaluate one chunk and score its positions first .. len-2 (see ScoreRequest)."""
    import numpy as np

    from .logprobs import ReferenceFiles, concat, quantize, score_rows

    tokens, first = list(request.tokens), request.first
    n, n_vocab = len(tokens), session.facts.n_vocab
    if n > session.n_ctx or not 0 <= first < n - 1:
        raise PromptError(f"a chunk of {n} tokens from {first} does not fit a context of {session.n_ctx}")
    files = ReferenceFiles(request.save_path or request.compare_path or "", n_vocab)
    ref_nll = np.asarray(request.reference_nll, dtype=np.float64)
    ref_top = np.asarray(request.reference_top, dtype=np.int32)
    session.reset()

    def score_block(span: tuple[int, int], logits: np.ndarray, p0: int) -> ChunkScores:
        b, e = span
        rows, r0 = logits[b - p0 : e - p0], b - first
        targets = np.asarray(tokens[b + 1 : e + 1])
        if request.save_path:
            files.write(request.row + r0, *quantize(rows))
        if not request.compare_path:
            return score_rows(rows, targets)
        reference = files.read(request.row + r0, e - b)
        return score_rows(rows, targets, reference, ref_nll[r0 : r0 + e - b], ref_top[r0 : r0 + e - b])

    parts: list[ChunkScores] = []
    batch = llama_cpp.llama_batch_init(session.n_batch, 0, 1)
    # numpy lets go of the GIL in its loops: blocks of rows are scored on the decode threads' cores
    # between decodes, as llama-perplexity spreads its KL divergence over threads.
    pool = ThreadPoolExecutor(max_workers=session.facts.n_threads)
    try:
        for start in range(0, n, session.n_batch):
            size = min(session.n_batch, n - start)
            for k in range(size):
                pos = start + k
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = tokens[pos], pos, 1
                batch.seq_id[k][0] = 0
                batch.logits[k] = pos >= first
            batch.n_tokens = size
            session.decode(batch)
            p0 = max(first, start)  # the position of the first output row of this batch
            n_out = start + size - p0
            if n_out <= 0:
                continue
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(session.ctx), shape=(n_out, n_vocab))
            # Blocks of rows keep the temporaries small even for a 262144-token vocabulary; all are
            # scored before the next decode overwrites the logits.
            end = min(start + size, n - 1)
            spans = [(b, min(b + _SCORE_BLOCK, end)) for b in range(p0, end, _SCORE_BLOCK)]
            parts.extend(pool.map(functools.partial(score_block, logits=logits, p0=p0), spans))
    finally:
        pool.shutdown()
        llama_cpp.llama_batch_free(batch)
        session.reset()
    return concat(parts)
