"""`ondevice bench`'s pp and tg against a bare llama-cpp-python loop (and llama-bench when on PATH).

Both load the same file with the same threads, batch and context (mmap off), and run llama-bench's
tests: pp = one prompt batch of random token ids, tg = single-token decodes, KV cache cleared
before each. They alternate round by round in one run, so the machine's noise hits both; the
script prints per-round figures, medians and the ratio ondevice / bare (goal: at least 0.97).

    python benchmarks/bench_vs_bare.py [--rounds 5] [-p 512] [-n 128] [--threads N] [REF ...]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
import shutil
import statistics
import subprocess
import time

import llama_cpp

from ondevice.refs import resolve
from ondevice.runtime.engine import open_model
from ondevice.runtime.llama_params import default_threads
from ondevice.runtime.protocol import ExtraBufts, LoadOptions

GOAL = 0.97


@llama_cpp.llama_log_callback
def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass


class BareBench:
    """llama-bench's two tests with the least Python around llama_decode."""

    def __init__(self, path: str, n_ctx: int, n_batch: int, threads: int, extra_bufts: bool) -> None:
        llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
        mparams.use_extra_bufts = extra_bufts  # as the worker ended up loading (off where they crash)
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = n_ctx, n_batch, n_batch
        cparams.n_threads = cparams.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.bos = llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_get_add_bos(vocab) else -1
        self.n_batch = n_batch

    def _tokens(self, n: int, seed: int) -> list[int]:
        rng = random.Random(seed)
        tokens = [rng.randrange(self.n_vocab) for _ in range(n)]
        if self.bos >= 0:
            tokens[0] = self.bos
        return tokens

    def pp(self, n: int, seed: int) -> float:
        tokens = self._tokens(n, seed)
        arrays = [
            (llama_cpp.llama_token * len(c))(*c)
            for c in (tokens[i : i + self.n_batch] for i in range(0, n, self.n_batch))
        ]
        llama_cpp.llama_memory_clear(self.memory, True)
        started = time.perf_counter()
        for array in arrays:
            llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(array, len(array)))
        llama_cpp.llama_synchronize(self.ctx)
        return n / (time.perf_counter() - started)

    def tg(self, n: int, seed: int) -> float:
        tokens = self._tokens(n, seed)
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)
        llama_cpp.llama_memory_clear(self.memory, True)
        started = time.perf_counter()
        for token in tokens:
            one[0] = token
            llama_cpp.llama_decode(self.ctx, batch)
            llama_cpp.llama_synchronize(self.ctx)
        return n / (time.perf_counter() - started)

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def llama_bench(
    path: str, p: int, n: int, reps: int, threads: int, extra_bufts: bool
) -> dict[str, float] | None:
    """llama-bench's own avg t/s for pp and tg, when the tool is installed."""
    exe = shutil.which("llama-bench")
    if exe is None:
        return None
    repack = ["--repack", "1" if extra_bufts else "0"]
    out = subprocess.run(
        [
            exe,
            "-m",
            path,
            "-p",
            str(p),
            "-n",
            str(n),
            "-r",
            str(reps),
            "-t",
            str(threads),
            *repack,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in json.loads(out)}


def bench(
    ref: str, rounds: int, p: int, n: int, threads: int, n_ctx: int, settle: float, extra_bufts: ExtraBufts
) -> dict[str, float]:
    model = resolve(ref)
    options = LoadOptions(
        n_ctx=n_ctx, n_threads=threads, n_batch=512, use_mmap=False, extra_bufts=extra_bufts
    )
    worker = open_model(model, options)
    worker.bench("pp", p)  # warm-ups, as llama-bench does (where extra buffer types crash, `auto` settles)
    worker.bench("tg", 1)
    bufts = worker.facts.extra_bufts
    bare = BareBench(str(model.path), n_ctx, min(512, n_ctx), threads, bufts)
    bare.pp(p, 0)
    bare.tg(1, 0)
    figures: dict[str, list[float]] = {"ours pp": [], "bare pp": [], "ours tg": [], "bare tg": []}
    print(
        f"\n{model.display_name}: {threads} threads, pp{p}, tg{n}, "
        f"extra buffer types {'on' if bufts else 'off'}"
    )
    measure = {
        "ours pp": lambda r: p / worker.bench("pp", p, seed=r).seconds,
        "bare pp": lambda r: bare.pp(p, r),
        "ours tg": lambda r: n / worker.bench("tg", n, seed=r).seconds,
        "bare tg": lambda r: bare.tg(n, r),
    }
    for r in range(rounds):
        for key, run in measure.items():
            # The other process's OpenMP threads spin for a while after their last job: let them settle.
            time.sleep(settle)
            figures[key].append(run(r))
        print("  round", r + 1, "  ".join(f"{k} {v[-1]:8.1f}" for k, v in figures.items()), "tok/s")
    worker.close()
    bare.close()
    med = {k: statistics.median(v) for k, v in figures.items()}
    ratios = {"pp": med["ours pp"] / med["bare pp"], "tg": med["ours tg"] / med["bare tg"]}
    print("  median", "  ".join(f"{k} {v:.1f}" for k, v in med.items()), "tok/s")
    print(f"  ratio ondevice/bare: pp {ratios['pp']:.3f}  tg {ratios['tg']:.3f}")
    reference = llama_bench(str(model.path), p, n, rounds, threads, bufts)
    if reference is None:
        print("  llama-bench is not on PATH: skipped")
    else:
        for test in ("pp", "tg"):
            ratios[f"{test} vs llama-bench"] = med[f"ours {test}"] / reference[test]
        print(f"  llama-bench: pp {reference['pp']:.1f}  tg {reference['tg']:.1f} tok/s")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("refs", nargs="*", default=["bundled:smollm2-135m-instruct", "bundled:gemma-3-270m"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--settle", type=float, default=0.5, help="Seconds of pause before each measurement.")
    parser.add_argument("--extra-bufts", choices=[e.value for e in ExtraBufts], default="auto")
    args = parser.parse_args()
    setting = ExtraBufts(args.extra_bufts)
    results = {
        ref: bench(ref, args.rounds, args.p, args.n, args.threads, args.ctx, args.settle, setting)
        for ref in args.refs
    }
    print(f"\nratio ondevice/bare, medians (goal >= {GOAL}):")
    for ref, ratios in results.items():
        verdict = "ok" if min(ratios["pp"], ratios["tg"]) >= GOAL else "BELOW GOAL"
        print(f"  {ref}: " + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items()) + f"  {verdict}")


if __name__ == "__main__":
    main()
