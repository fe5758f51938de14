"""What spreading a model over RPC servers costs: pp and tg tok/s local vs split over 2 loopback servers.

Two `ondevice rpc-server` children on 127.0.0.1 (1 thread each, as upstream's
tests/test-rpc-multi-server.sh) take every layer (`--rpc ... --gpu-layers -1`); the local run uses
this machine's threads. Both are measured alternately, round by round, in one run (llama-bench's
method: random tokens, KV cache cleared, mmap off), and printed side by side with the ratio and the
load time. If llama-bench is on PATH, its figure for the same split (`--rpc ... -ngl 99 --repack 0`)
is printed beside ours (goal: ours >= 0.95x of it), run with the same client threads and mmap off.
On a machine other programs keep busy, `--threads 1` is the fair local side: llama.cpp's threads
spin-wait for each other, and two of them on two shared cores lose most of their time.

    python benchmarks/rpc_split.py [--rounds 5] [-p 64] [-n 32] [--threads 2] [REF ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
from dataclasses import replace
from pathlib import Path

from ondevice.refs import resolve
from ondevice.runtime.engine import open_model
from ondevice.runtime.protocol import ExtraBufts, LoadOptions
from ondevice.runtime.rpc_server import RpcServer, ServerConfig

TESTS = ("pp", "tg")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def llama_bench(
    path: Path, servers: str, p: int, n: int, rounds: int, threads: int
) -> dict[str, float] | None:
    """llama-bench's mean tok/s for the same split, if it is on PATH (and built with RPC)."""
    exe = shutil.which("llama-bench")
    if exe is None:
        return None
    args = [exe, "-m", str(path), "--rpc", servers, "-ngl", "99", "-p", str(p), "-n", str(n)]
    args += ["-r", str(rounds), "-t", str(threads), "--repack", "0", "-lm", "none", "-o", "json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        print(f"llama-bench failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    figures = {}
    for row in json.loads(done.stdout):
        figures["pp" if row["n_prompt"] else "tg"] = float(row["avg_ts"])
    return figures


def measure(ref: str, rounds: int, p: int, n: int, threads: int) -> None:
    model = resolve(ref)
    local = LoadOptions(n_ctx=max(p + n, 256), n_threads=threads, use_mmap=False, extra_bufts=ExtraBufts.OFF)
    servers = [RpcServer(ServerConfig("127.0.0.1", free_port(), threads=1)) for _ in range(2)]
    names = tuple(str(s.config.endpoint) for s in servers)
    try:
        split = replace(local, rpc_servers=names, n_gpu_layers=-1)
        workers = {"local": open_model(model, local), "split": open_model(model, split)}
        loads = {k: w.facts.load_seconds for k, w in workers.items()}
        figures: dict[tuple[str, str], list[float]] = {}
        for worker in workers.values():  # warm-up
            for test in TESTS:
                worker.bench(test, p if test == "pp" else 1, seed=12345)
        for rnd in range(rounds):
            for key, worker in workers.items():
                for test, tokens in (("pp", p), ("tg", n)):
                    seconds = worker.bench(test, tokens, seed=rnd).seconds
                    figures.setdefault((key, test), []).append(tokens / seconds)
        for worker in workers.values():
            worker.close()  # a server serves one client: llama-bench comes after
        theirs = llama_bench(model.path, ",".join(names), p, n, rounds, threads)
    finally:
        for server in servers:
            server.stop()

    print(f"\n{model.display_name}: local {threads} threads vs 2 loopback RPC servers (1 thread each)")
    header = f"{'test':<6}{'local t/s':>12}{'split t/s':>12}{'split/local':>13}"
    header += f"{'llama-bench':>13}{'ours/theirs':>13}" if theirs else ""
    print(header)
    for test, tokens in (("pp", p), ("tg", n)):
        ours = statistics.median(figures[("local", test)])
        over = statistics.median(figures[("split", test)])
        line = f"{test}{tokens:<4}{ours:>12.1f}{over:>12.1f}{over / ours:>13.2f}"
        if theirs and test in theirs:
            line += f"{theirs[test]:>13.1f}{over / theirs[test]:>13.2f}"
        print(line)
    print(f"load: local {loads['local']:.2f} s, split {loads['split']:.2f} s")
    if theirs is None:
        print("(llama-bench is not on PATH: bash /work/shared/tools/build-llama-tools.sh builds it)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("refs", nargs="*", default=["bundled:gemma-3-270m", "bundled:smollm2-135m-instruct"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-p", type=int, default=64)
    parser.add_argument("-n", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for ref in args.refs:
        measure(ref, args.rounds, args.p, args.n, args.threads)


if __name__ == "__main__":
    main()
