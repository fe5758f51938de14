"""One loaded model in llama.cpp, driven through llama-cpp-python's C bindings.

This module runs inside the worker process only. Sampling stays in llama.cpp's native sampler
chain, so no logits are copied into Python on the generation path.
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import functools
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import llama_cpp
import psutil

from ..errors import PromptError, WorkerError
from ..prompting import PromptMode, render
from .memory import peak_rss_bytes
from .protocol import (
    BenchRequest,
    BenchTiming,
    ExtraBufts,
    Finished,
    GenerateRequest,
    GenerationParams,
    GenerationStats,
    LoadOptions,
    ModelFacts,
    PromptReady,
    ScoreRequest,
    TokenEvent,
)
from .stops import StopScanner

_LOG_LINES: collections.deque[str] = collections.deque(maxlen=200)
_BUFFER_LINES: list[str] = []  # "CPU KV buffer size = 6.00 MiB" and the like, for the memory breakdown
_BUFFER_SIZE = re.compile(r"(\w+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


@llama_cpp.llama_log_callback
def _log_to_ring(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs hundreds of lines per load; keep the tail for error messages instead of printing.
    line = text.decode("utf-8", errors="replace")
    _LOG_LINES.append(line)
    if "buffer size" in line:
        _BUFFER_LINES.append(line)
    if level == 3:  # GGML_LOG_LEVEL_ERROR: also into the worker's log file, read after a crash
        sys.stderr.write(line)


def last_log_error() -> str:
    """The last llama.cpp line that says why something failed, for messages about failed loads.

    llama.cpp logs the reason ("error loading model: ... wrong shape ...") and then a generic
    "failed to load model": the reason is the line that says more.
    """
    for line in reversed(_LOG_LINES):
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    for line in reversed(_LOG_LINES):
        if any(word in line.lower() for word in ("error", "failed", "invalid")):
            return line.strip()
    return _LOG_LINES[-1].strip() if _LOG_LINES else ""


def buffer_sizes(lines: list[str]) -> dict[str, int]:
    """Bytes llama.cpp allocated per kind of buffer (model, KV, compute, output), summed over devices.

    llama.cpp has no API for these; its load log states them, one line per device and buffer.
    """
    sizes = {"model": 0, "KV": 0, "compute": 0, "output": 0}
    for line in lines:
        match = _BUFFER_SIZE.search(line)
        if match:
            sizes[match.group(2)] += int(float(match.group(3)) * 1024 * 1024)
    return sizes


FAULT_ENV = "ONDEVICE_TEST_FAULT"
"""Test-only fault injection. "SIGILL:extra-bufts" makes a worker kill itself with a real SIGILL on its
first batch of two or more tokens while extra buffer types are on (as llama.cpp's AMX kernels die on some
CPUs; SIGSEGV works too); "SIGILL" does it with them off too (as a build for another CPU does)."""


def injected_fault(extra_bufts: bool) -> signal.Signals | None:
    name, _, condition = os.environ.get(FAULT_ENV, "").partition(":")
    if name not in ("SIGILL", "SIGSEGV") or (condition == "extra-bufts" and not extra_bufts):
        return None
    return signal.Signals[name]


def _limit_note(options: LoadOptions) -> str:
    """Why an allocation may have failed: the worker's memory limit, when one was set."""
    if options.memory_limit_bytes and "alloc" in last_log_error():
        return (
            f" (the worker may use {options.memory_limit_bytes / (1 << 30):.1f} GiB, three times the "
            "memory pre-flight's estimate; --force loads without that limit)"
        )
    return ""


def default_threads() -> int:
    """One thread per physical core: llama.cpp's decode gains nothing from hyper-threads."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


_FLASH_ATTN = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


def _load_mode(options: LoadOptions) -> int:
    if options.use_mlock:
        return llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK if options.use_mmap else llama_cpp.LLAMA_LOAD_MODE_MLOCK
    return llama_cpp.LLAMA_LOAD_MODE_MMAP if options.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE


def _kv_type(name: str) -> int:
    value = getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", None)
    if value is None:
        raise WorkerError(f"unknown KV-cache type {name!r}")
    return value


class LlamaSession:
    """A model and one context; keeps the KV cache between requests to reuse a shared prefix."""

    def __init__(self, path: str, options: LoadOptions) -> None:
        llama_cpp.llama_log_set(_log_to_ring, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _BUFFER_LINES.clear()
        started = time.perf_counter()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = options.n_gpu_layers
        mparams.load_mode = _load_mode(options)
        self.extra_bufts = options.extra_bufts is not ExtraBufts.OFF
        mparams.use_extra_bufts = self.extra_bufts
        self._fault = injected_fault(self.extra_bufts)
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            raise WorkerError(f"llama.cpp could not load {path}: {last_log_error()}{_limit_note(options)}")
        threads = options.n_threads or default_threads()
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = options.n_ctx
        cparams.n_batch = min(options.n_batch, options.n_ctx)
        cparams.n_ubatch = min(options.n_ubatch or options.n_batch, cparams.n_batch)
        cparams.flash_attn_type = _FLASH_ATTN[options.flash_attn]
        cparams.type_k = cparams.type_v = _kv_type(options.kv_cache_type)
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise WorkerError(
                f"llama.cpp could not create a context of {options.n_ctx}: {last_log_error()}"
                + _limit_note(options)
            )
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = cparams.n_batch
        self.cached: list[int] = []  # the tokens whose keys and values sit in the KV cache
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        template = llama_cpp.llama_model_chat_template(self.model, None)
        buffers = buffer_sizes(_BUFFER_LINES)
        self.facts = ModelFacts(
            n_ctx=self.n_ctx,
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(self.model),
            n_vocab=llama_cpp.llama_vocab_n_tokens(self.vocab),
            n_threads=threads,
            n_gpu_layers=options.n_gpu_layers,
            model_size_bytes=llama_cpp.llama_model_size(self.model),
            model_buffer_bytes=buffers["model"],
            kv_cache_bytes=buffers["KV"],
            compute_buffer_bytes=buffers["compute"],
            output_buffer_bytes=buffers["output"],
            load_seconds=time.perf_counter() - started,
            bos_text=self._special_text(llama_cpp.llama_vocab_bos(self.vocab)),
            eos_text=self._special_text(llama_cpp.llama_vocab_eos(self.vocab)),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self.vocab)),
            chat_template=template.decode("utf-8", errors="replace") if template else None,
            system_info=llama_cpp.llama_print_system_info().decode(errors="replace"),
            pid=os.getpid(),
            extra_bufts=self.extra_bufts,
        )

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return (llama_cpp.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8", errors="replace")

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    # -- tokens -------------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?", never a dead worker
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:
            raise WorkerError(f"tokenizer needed {-n} slots for {len(data)} bytes")
        return list(tokens[:n])

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
            cached = self._piece_buf.raw[: max(n, 0)]
            self._pieces[token] = cached
        return cached

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def reset(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)
        self.cached = []

    # -- prompt -------------------------------------------------------------------------------

    def render_prompt(self, request: GenerateRequest) -> tuple[str, list[int]]:
        """The exact text for this request, and its tokens (BOS added once, as the model wants)."""
        facts = self.facts
        text = render(
            request.mode, list(request.messages), facts.chat_template, facts.bos_text, facts.eos_text
        )
        parse_special = request.mode is not PromptMode.COMPLETION
        if facts.add_bos and facts.bos_text and text.startswith(facts.bos_text):
            text = text[len(facts.bos_text) :]  # the template wrote BOS; the tokenizer adds it too
        tokens = self.tokenize(text, add_special=True, parse_special=parse_special)
        if not tokens:
            raise PromptError("empty prompt")
        if len(tokens) >= self.n_ctx:
            raise PromptError(
                f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}; "
                "shorten the prompt or raise --ctx"
            )
        return text, tokens

    def _evaluate_prompt(self, tokens: list[int]) -> int:
        """Bring the KV cache to `tokens`, reusing the common prefix; return how many were reused."""
        keep = 0
        limit = min(len(self.cached), len(tokens) - 1)  # the last prompt token must be decoded for logits
        while keep < limit and self.cached[keep] == tokens[keep]:
            keep += 1
        if keep < len(self.cached):
            if not llama_cpp.llama_memory_seq_rm(self.memory, 0, keep, -1):
                llama_cpp.llama_memory_clear(self.memory, True)
                keep = 0
            self.cached = self.cached[:keep]
        for start in range(keep, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            self._decode(llama_cpp.llama_batch_get_one(array, len(chunk)))
            self.cached.extend(chunk)
        return keep

    def _decode(self, batch: llama_cpp.llama_batch) -> None:
        if self._fault and batch.n_tokens >= 2:  # where llama.cpp's AMX kernels die
            os.kill(os.getpid(), self._fault)
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise WorkerError(f"llama_decode failed with status {status}: {last_log_error()}")

    # -- generation ---------------------------------------------------------------------------

    def _sampler(self, params: GenerationParams) -> llama_cpp.llama_sampler_p:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if params.temperature <= 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            return chain
        seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        if params.top_k > 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        if 0 < params.top_p < 1:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def generate(
        self, request: GenerateRequest, cancelled: Callable[[], bool]
    ) -> Iterator[PromptReady | TokenEvent | Finished]:
        """Stream one answer: PromptReady, then TokenEvents, then Finished."""
        params = request.params
        started = time.perf_counter()
        text, tokens = self.render_prompt(request)
        reused = self._evaluate_prompt(tokens)
        prompt_done = time.perf_counter()
        ready = PromptReady(text=text, n_tokens=len(tokens), n_reused=reused)
        yield ready

        sampler = self._sampler(params)
        stops = StopScanner(params.stop)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        generated: list[int] = []
        first_at = last_at = prompt_done
        stop_reason = "length"
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)  # reused: it points at `one`
        sample, decode, is_eog = (
            llama_cpp.llama_sampler_sample,
            llama_cpp.llama_decode,
            llama_cpp.llama_vocab_is_eog,
        )
        ctx, vocab, piece, cached = self.ctx, self.vocab, self.piece, self.cached
        limit = min(params.max_tokens, self.n_ctx - len(tokens))
        try:
            while len(generated) < limit:
                token = sample(sampler, ctx, -1)
                now = time.perf_counter()
                if is_eog(vocab, token) and not params.ignore_eos:
                    stop_reason = "eos"
                    break
                if not generated:
                    first_at = now
                last_at = now
                generated.append(token)
                emit, hit = stops.feed(decoder.decode(piece(token)))
                yield TokenEvent(emit, token, now - started)
                if hit:
                    stop_reason = "stop"
                    break
                if cancelled():
                    stop_reason = "cancelled"
                    break
                if len(generated) >= limit:
                    break
                one[0] = token
                status = decode(ctx, batch)
                if status != 0:
                    raise WorkerError(f"llama_decode failed with status {status}: {last_log_error()}")
                cached.append(token)
        finally:
            llama_cpp.llama_sampler_free(sampler)
        tail = stops.finish(decoder.decode(b"", final=True))
        if tail:
            yield TokenEvent(tail, -1, time.perf_counter() - started)
        stats = GenerationStats(
            prompt_tokens=len(tokens),
            prompt_tokens_evaluated=len(tokens) - reused,
            generated_tokens=len(generated),
            prompt_seconds=prompt_done - started,
            generation_seconds=last_at - first_at,
            time_to_first_token=(first_at - started) if generated else 0.0,
            peak_rss_bytes=peak_rss_bytes(),
            stop_reason=stop_reason,
        )
        yield Finished(text=stops.text, token_ids=tuple(generated), prompt=ready, stats=stats)

    # -- measuring ----------------------------------------------------------------------------

    def bench(self, request: BenchRequest) -> BenchTiming:
        """One llama-bench test (pp or tg) on an empty KV cache, timed around the decode calls only."""
        if request.test not in ("pp", "tg"):
            raise WorkerError(f"unknown bench test {request.test!r}")
        needed = request.n_tokens + (1 if request.test == "tg" else 0)
        if request.n_tokens < 1 or needed > self.n_ctx:
            raise PromptError(
                f"{request.test}{request.n_tokens} needs a context of {needed} tokens but it holds "
                f"{self.n_ctx}; raise --ctx"
            )
        threads = request.n_threads or self.facts.n_threads
        rng = random.Random(request.seed)
        n_vocab, bos = self.facts.n_vocab, llama_cpp.llama_vocab_bos(self.vocab)
        # As llama-bench: random ids, BOS first when the model wants one.
        tokens = [rng.randrange(n_vocab) for _ in range(request.n_tokens)]
        if self.facts.add_bos and bos >= 0:
            tokens[0] = bos
        llama_cpp.llama_set_n_threads(self.ctx, threads, threads)
        self.reset()
        first_token = 0.0
        try:
            if request.test == "pp":
                seconds, first_token = self._bench_prompt(tokens)
            else:
                seconds = self._bench_generation(tokens)
        finally:
            self.reset()
            llama_cpp.llama_set_n_threads(self.ctx, self.facts.n_threads, self.facts.n_threads)
        return BenchTiming(request.test, request.n_tokens, threads, seconds, first_token, peak_rss_bytes())

    def _bench_prompt(self, tokens: list[int]) -> tuple[float, float]:
        arrays = [
            (llama_cpp.llama_token * len(chunk))(*chunk)
            for chunk in (tokens[i : i + self.n_batch] for i in range(0, len(tokens), self.n_batch))
        ]
        greedy = llama_cpp.llama_sampler_init_greedy()
        try:
            started = time.perf_counter()
            for array in arrays:
                self._decode(llama_cpp.llama_batch_get_one(array, len(array)))
            llama_cpp.llama_synchronize(self.ctx)
            seconds = time.perf_counter() - started
            llama_cpp.llama_sampler_sample(greedy, self.ctx, -1)
            first_token = time.perf_counter() - started
        finally:
            llama_cpp.llama_sampler_free(greedy)
        return seconds, first_token

    def _bench_generation(self, tokens: list[int]) -> float:
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)
        ctx, decode, synchronize = self.ctx, llama_cpp.llama_decode, llama_cpp.llama_synchronize
        started = time.perf_counter()
        for token in tokens:
            one[0] = token
            status = decode(ctx, batch)
            if status != 0:
                raise WorkerError(f"llama_decode failed with status {status}: {last_log_error()}")
            synchronize(ctx)
        return time.perf_counter() - started

    def score(self, request: ScoreRequest):  # -> ChunkScores (numpy is imported only when scoring)
        """Evaluate one chunk and score its positions first .. len-2 (see ScoreRequest)."""
        import numpy as np

        from .logprobs import ReferenceFiles, concat, quantize, score_rows

        tokens, first = list(request.tokens), request.first
        n, n_vocab = len(tokens), self.facts.n_vocab
        if n > self.n_ctx or not 0 <= first < n - 1:
            raise PromptError(f"a chunk of {n} tokens from {first} does not fit a context of {self.n_ctx}")
        files = ReferenceFiles(request.save_path or request.compare_path or "", n_vocab)
        ref_nll = np.asarray(request.reference_nll, dtype=np.float64)
        ref_top = np.asarray(request.reference_top, dtype=np.int32)
        self.reset()

        def score_block(span: tuple[int, int], logits: np.ndarray, p0: int):
            b, e = span
            rows, r0 = logits[b - p0 : e - p0], b - first
            targets = np.asarray(tokens[b + 1 : e + 1])
            if request.save_path:
                files.write(request.row + r0, *quantize(rows))
            if not request.compare_path:
                return score_rows(rows, targets)
            reference = files.read(request.row + r0, e - b)
            return score_rows(rows, targets, reference, ref_nll[r0 : r0 + e - b], ref_top[r0 : r0 + e - b])

        parts = []
        batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        # numpy lets go of the GIL in its loops: blocks of rows are scored on the decode threads' cores
        # between decodes, as llama-perplexity spreads its KL divergence over threads.
        pool = ThreadPoolExecutor(max_workers=self.facts.n_threads)
        try:
            for start in range(0, n, self.n_batch):
                size = min(self.n_batch, n - start)
                for k in range(size):
                    pos = start + k
                    batch.token[k], batch.pos[k], batch.n_seq_id[k] = tokens[pos], pos, 1
                    batch.seq_id[k][0] = 0
                    batch.logits[k] = pos >= first
                batch.n_tokens = size
                self._decode(batch)
                p0 = max(first, start)  # the position of the first output row of this batch
                n_out = start + size - p0
                if n_out <= 0:
                    continue
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.ctx), shape=(n_out, n_vocab))
                # Blocks of rows keep the temporaries small even for a 262144-token vocabulary; all are
                # scored before the next decode overwrites the logits.
                end = min(start + size, n - 1)
                spans = [(b, min(b + _SCORE_BLOCK, end)) for b in range(p0, end, _SCORE_BLOCK)]
                parts.extend(pool.map(functools.partial(score_block, logits=logits, p0=p0), spans))
        finally:
            pool.shutdown()
            llama_cpp.llama_batch_free(batch)
            self.reset()
        return concat(parts)


_SCORE_BLOCK = 16
