"""Generation speed of `ondevice run`'s path against a bare llama-cpp-python decode loop.

Both use the same model file, prompt tokens, threads, context size and llama.cpp's native greedy
sampler, and generate exactly the same number of tokens. They run alternately in one process tree,
so the machine's noise hits both; the script prints per-round figures, medians and their ratio.

    python benchmarks/run_vs_bare.py [--rounds 5] [--tokens 128] [--threads N] [REF ...]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import llama_cpp

from ondevice.refs import resolve
from ondevice.runtime.engine import Backend, open_model, single_turn
from ondevice.runtime.llama_params import default_threads
from ondevice.runtime.protocol import ExtraBufts, Finished, GenerationParams, LoadOptions, TokenEvent

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@llama_cpp.llama_log_callback
def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass


class BareLoop:
    """The least Python a llama-cpp-python user can put around llama_decode."""

    def __init__(self, path: str, n_ctx: int, threads: int, extra_bufts: bool) -> None:
        llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = extra_bufts  # as the worker ended up loading (off where they crash)
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = n_ctx, 512, 512
        cparams.n_threads = cparams.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        self.memory = llama_cpp.llama_get_memory(self.ctx)

    def generate(self, prompt_tokens: list[int], n: int) -> float:
        """Decode `n` tokens greedily after the prompt; return tokens/s after the first one."""
        llama_cpp.llama_memory_clear(self.memory, True)
        array = (llama_cpp.llama_token * len(prompt_tokens))(*prompt_tokens)
        llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(array, len(prompt_tokens)))
        sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(sampler, llama_cpp.llama_sampler_init_greedy())
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)
        first = last = 0.0
        for i in range(n):
            one[0] = llama_cpp.llama_sampler_sample(sampler, self.ctx, -1)
            last = time.perf_counter()
            if i == 0:
                first = last
            if i < n - 1:
                llama_cpp.llama_decode(self.ctx, batch)
        llama_cpp.llama_sampler_free(sampler)
        return (n - 1) / (last - first)

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def ours(worker: Backend, request) -> tuple[float, list[int], list[int]]:
    """Tokens/s as `ondevice run` reports it: from the first token to the last, timed in the worker as
    each is sampled, while the parent reads and decodes the stream (and so competes for the cores)."""
    times: list[float] = []
    finished = None
    for event in worker.stream(request):
        if isinstance(event, TokenEvent) and event.token_id >= 0:
            times.append(event.t)
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    prompt_tokens = worker.tokenize(finished.prompt.text, add_special=True, parse_special=True)
    return (len(times) - 1) / (times[-1] - times[0]), prompt_tokens, list(finished.token_ids)


def bench(ref: str, rounds: int, n: int, threads: int, n_ctx: int, extra_bufts: ExtraBufts) -> float:
    model = resolve(ref)
    params = GenerationParams(max_tokens=n, temperature=0, ignore_eos=True)
    options = LoadOptions(n_ctx=n_ctx, n_threads=threads, extra_bufts=extra_bufts)
    worker = open_model(model, options)
    request = single_turn(model.kind, bool(worker.facts.chat_template), PROMPT, params)
    worker.reset()
    ours(worker, request)  # warm-up (where extra buffer types crash, `auto` settles here), prompt tokens
    _, prompt_tokens, _ = ours(worker, request)
    bare = BareLoop(str(model.path), n_ctx, threads, worker.facts.extra_bufts)
    bare.generate(prompt_tokens, n)  # warm-up
    ours_tps, bare_tps = [], []
    print(
        f"\n{model.display_name} ({model.kind.value}), {threads} threads, {n} tokens, "
        f"prompt {len(prompt_tokens)} tokens, "
        f"extra buffer types {'on' if worker.facts.extra_bufts else 'off'}"
    )
    for r in range(rounds):
        worker.reset()
        ours_tps.append(ours(worker, request)[0])
        bare_tps.append(bare.generate(prompt_tokens, n))
        print(f"  round {r + 1}: ondevice {ours_tps[-1]:7.1f} tok/s   bare loop {bare_tps[-1]:7.1f} tok/s")
    worker.close()
    bare.close()
    ratio = statistics.median(ours_tps) / statistics.median(bare_tps)
    print(
        f"  median: ondevice {statistics.median(ours_tps):.1f} tok/s, "
        f"bare {statistics.median(bare_tps):.1f} tok/s"
        f"  ratio {ratio:.3f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("refs", nargs="*", default=["bundled:smollm2-135m-instruct", "bundled:gemma-3-270m"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--extra-bufts", choices=[e.value for e in ExtraBufts], default="auto")
    args = parser.parse_args()
    setting = ExtraBufts(args.extra_bufts)
    ratios = {ref: bench(ref, args.rounds, args.tokens, args.threads, args.ctx, setting) for ref in args.refs}
    print("\nratio ondevice/bare (goal >= 0.95):")
    for ref, ratio in ratios.items():
        print(f"  {ref}: {ratio:.3f} {'ok' if ratio >= 0.95 else 'BELOW GOAL'}")


if __name__ == "__main__":
    main()
