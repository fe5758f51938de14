"""What llama.cpp's extra CPU buffer types are worth: pp and tg with them on and off, side by side.

`--extra-bufts auto` falls back to off on CPUs where they crash (SIGILL/SIGSEGV in llama.cpp's AMX
kernels). This prints, per model and test, tok/s with them on and off, measured alternately round by
round in one run (llama-bench's method: random tokens, KV cache cleared, mmap off), and the ratio of
the fallback (off) to the best setting that works on this CPU. A setting that crashes is shown as such.

    python benchmarks/extra_bufts_cost.py [--rounds 5] [-p 512] [-n 128] [--threads N] [REF ...]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import psutil

from ondevice.errors import WorkerError
from ondevice.refs import resolve
from ondevice.runtime.engine import Backend, open_model
from ondevice.runtime.protocol import ExtraBufts, LoadOptions

SETTINGS = (ExtraBufts.ON, ExtraBufts.OFF)


def _crash(exc: WorkerError) -> str:
    text = str(exc)
    return next((s for s in ("SIGILL", "SIGSEGV", "SIGBUS") if s in text), "crashed")


def measure(ref: str, rounds: int, p: int, n: int, threads: int) -> dict[str, dict[str, float | str]]:
    """Median tok/s per test ("pp", "tg") and setting ("on", "off"), or the signal it died by."""
    model = resolve(ref)
    options = LoadOptions(n_ctx=max(p, n + 1, 256), n_threads=threads, n_batch=512, use_mmap=False)
    workers: dict[ExtraBufts, Backend | None] = {}
    figures: dict[tuple[str, ExtraBufts], list[float]] = {}
    crashed: dict[tuple[str, ExtraBufts], str] = {}
    tests = [("pp", p), ("tg", n)]

    def run(setting: ExtraBufts, test: str, tokens: int, seed: int) -> None:
        if (test, setting) in crashed:
            return
        try:
            if workers.get(setting) is None:
                workers[setting] = open_model(model, replace(options, extra_bufts=setting))
            worker = workers[setting]
            assert worker is not None
            if seed < 0:  # warm-up
                worker.bench(test, tokens if test == "pp" else 1, seed=12345)
                return
            figures.setdefault((test, setting), []).append(
                tokens / worker.bench(test, tokens, seed=seed).seconds
            )
        except WorkerError as exc:
            crashed[(test, setting)] = _crash(exc)
            if workers.get(setting) is not None:
                workers[setting].close()  # type: ignore[union-attr]
            workers[setting] = None  # the next test gets a fresh worker

    print(f"\n{model.display_name}: {threads} threads, pp{p}, tg{n}, {rounds} rounds")
    for setting in SETTINGS:
        for test, tokens in tests:
            run(setting, test, tokens, -1)
    for r in range(rounds):
        for test, tokens in tests:
            for setting in SETTINGS:
                run(setting, test, tokens, r)
        row = "  ".join(
            f"{test} {s.value} "
            + (
                f"{figures[(test, s)][-1]:7.1f}"
                if (test, s) in figures and (test, s) not in crashed
                else "crashed"
            )
            for test, _ in tests
            for s in SETTINGS
        )
        print(f"  round {r + 1}: {row} tok/s")
    for worker in workers.values():
        if worker is not None:
            worker.close()
    result: dict[str, dict[str, float | str]] = {}
    for test, _ in tests:
        result[test] = {
            s.value: crashed.get((test, s)) or statistics.median(figures[(test, s)]) for s in SETTINGS
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("refs", nargs="*", default=["bundled:smollm2-135m-instruct", "bundled:gemma-3-270m"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False) or 1)
    args = parser.parse_args()
    results = {ref: measure(ref, args.rounds, args.p, args.n, args.threads) for ref in args.refs}
    print("\n| model | test | on (tok/s) | off (tok/s) | off / on | off / best working |")
    print("|---|---|---|---|---|---|")
    for ref, tests in results.items():
        for test, by in tests.items():
            on, off = by["on"], by["off"]
            working = [v for v in (on, off) if isinstance(v, float)]
            ratio = f"{off / on:.3f}" if isinstance(on, float) and isinstance(off, float) else "-"
            best = f"{off / max(working):.3f}" if isinstance(off, float) else "-"
            show = [f"{v:.1f}" if isinstance(v, float) else f"crashes ({v})" for v in (on, off)]
            name = f"{test}{args.p if test == 'pp' else args.n}"
            print(f"| {ref} | {name} | {show[0]} | {show[1]} | {ratio} | {best} |")


if __name__ == "__main__":
    main()
