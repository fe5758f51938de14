"""One loaded model in llama.cpp, driven through llama-cpp-python's C bindings.

This module runs inside the worker process only. Sampling stays in llama.cpp's native sampler
chain, so no logits are copied into Python on the generation path. How options become llama.cpp's
parameters is `llama_params`'s, its log `llama_log`'s, and the bench and score measurements
`llama_measure`'s; the session is the one object the worker serves requests from.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import llama_cpp

from ..errors import PromptError, WorkerError
from ..prompting import PromptMode, render
from . import llama_imatrix, llama_measure
from .faults import injected_fault
from .llama_ggml import gpu_device_present, register_servers
from .llama_log import (
    capture_log,
    last_log_error,
    logged_buffer_sizes,
    logged_device_buffer_sizes,
    logged_layers_offloaded,
)
from .llama_params import context_params, default_threads, limit_note, model_params
from .memory import peak_rss_bytes
from .protocol import (
    BenchRequest,
    BenchTiming,
    DeviceShare,
    ExtraBufts,
    Finished,
    GenerateRequest,
    GenerationParams,
    GenerationStats,
    ImatrixRequest,
    LoadOptions,
    ModelFacts,
    PromptReady,
    ScoreRequest,
    StopReason,
    TokenEvent,
)
from .stops import StopScanner

if TYPE_CHECKING:
    from ..imatrix_file import ImatrixEntry
    from .logprobs import ChunkScores


def _split(servers: tuple[str, ...]) -> tuple[DeviceShare, ...]:
    """Per device, what llama.cpp allocated, when RPC servers took part (empty otherwise).

    llama.cpp names an RPC buffer by the server's own device number and endpoint ("RPC0[host:port]");
    the devices are RPC0, RPC1 ... in the order the servers were given (one device each).
    """
    if not servers:
        return ()
    shares = []
    for name, sizes in logged_device_buffer_sizes().items():
        number, _, rest = name.partition("[")
        endpoint = rest.rstrip("]")
        if not endpoint:
            device, description = "CPU", "this machine"
        elif endpoint in servers and number == "RPC0":
            device, description = f"RPC{servers.index(endpoint)}", endpoint
        else:  # a server with several devices
            device, description = name, endpoint
        compute = sizes["compute"] + sizes["output"]
        shares.append(DeviceShare(device, description, sizes["model"], sizes["KV"], compute))
    order = {f"RPC{i}": i for i in range(len(servers))}
    return tuple(sorted(shares, key=lambda s: (s.device != "CPU", order.get(s.device, len(order)), s.device)))


class LlamaSession:
    """A model and one context; keeps the KV cache between requests to reuse a shared prefix."""

    def __init__(self, path: str, options: LoadOptions) -> None:
        capture_log()
        llama_cpp.llama_backend_init()
        started = time.perf_counter()
        self.extra_bufts = options.extra_bufts is not ExtraBufts.OFF
        self._fault = injected_fault(self.extra_bufts)
        # Before the model loads: a build whose tensors this cannot read is refused at once.
        self.collector = llama_imatrix.ImatrixCollector() if options.collect_imatrix else None
        gpu = gpu_device_present()
        if options.rpc_servers:
            register_servers(options.rpc_servers)
        self.model = llama_cpp.llama_model_load_from_file(
            path.encode(), model_params(options, self.extra_bufts)
        )
        if not self.model:
            raise WorkerError(f"llama.cpp could not load {path}: {last_log_error()}{limit_note(options)}")
        threads = options.n_threads or default_threads()
        cparams = context_params(options, threads)
        if self.collector is not None:
            cparams.cb_eval = self.collector.callback
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise WorkerError(
                f"llama.cpp could not create a context of {options.n_ctx}: {last_log_error()}"
                + limit_note(options)
            )
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = cparams.n_batch
        self.cached: list[int] = []  # the tokens whose keys and values sit in the KV cache
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        template = llama_cpp.llama_model_chat_template(self.model, None)
        buffers = logged_buffer_sizes()
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
            gpu_offload=gpu,
            split=_split(options.rpc_servers),
            layers_offloaded=logged_layers_offloaded(),
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
            self.decode(llama_cpp.llama_batch_get_one(array, len(chunk)))
            self.cached.extend(chunk)
        return keep

    def decode(self, batch: llama_cpp.llama_batch) -> None:
        """Run one batch through the model (the prompt, a bench test, a chunk to score)."""
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
        stop_reason = StopReason.LENGTH
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
                    stop_reason = StopReason.EOS
                    break
                if not generated:
                    first_at = now
                last_at = now
                generated.append(token)
                emit, hit = stops.feed(decoder.decode(piece(token)))
                yield TokenEvent(emit, token, now - started)
                if hit:
                    stop_reason = StopReason.STOP
                    break
                if cancelled():
                    stop_reason = StopReason.CANCELLED
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

    # -- measuring (llama_measure) ------------------------------------------------------------

    def bench(self, request: BenchRequest) -> BenchTiming:
        """One llama-bench test (pp or tg) on an empty KV cache, timed around the decode calls only."""
        return llama_measure.bench(self, request)

    def score(self, request: ScoreRequest) -> ChunkScores:
        """Evaluate one chunk and score its positions first .. len-2 (see ScoreRequest)."""
        return llama_measure.score(self, request)

    def imatrix(self, request: ImatrixRequest) -> dict[str, ImatrixEntry]:
        """One chunk's importance-matrix sums (see ImatrixRequest)."""
        return llama_imatrix.collect(self, request)
