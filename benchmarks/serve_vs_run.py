"""Streamed generation through `ondevice serve` against `ondevice run`'s path, on the same model file,
threads, context and greedy sampling, generating exactly the same number of tokens.

The server runs in this process on loopback (uvicorn in a thread, the model in its worker); the client
is httpx reading the server-sent events of /v1/completions. `run`'s path is the same engine called
directly (open_model + stream). Both are timed as their client sees them: tokens/s from the first
token's arrival to the last's, and the time to the first token from sending the request. Rounds
alternate, each with a prompt the KV cache has not seen, so the machine's noise hits both; the script
prints per-round figures, medians and the ratio (goal: >= 0.95), and the HTTP path's extra time to the
first token in ms. If llama.cpp's `llama-server` is on PATH, it gets the same client and rounds.

    python benchmarks/serve_vs_run.py [--rounds 5] [--tokens 128] [--threads N] [REF]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx

from ondevice.kinds import Kind
from ondevice.refs import resolve
from ondevice.runtime.engine import Backend, open_model, single_turn
from ondevice.runtime.llama_params import default_threads
from ondevice.runtime.protocol import ExtraBufts, GenerationParams, LoadOptions, TokenEvent
from ondevice.server.app import create_app
from ondevice.server.pool import ModelPool
from ondevice.server.serving import serving_in_thread

# Without TCP_NODELAY a client's request goes out as two writes (head, then body) and the second waits
# for the server's delayed ACK (tens of ms on loopback): a cost of the client, not of the server.
CLIENT = httpx.Client(
    transport=httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
)
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def prompt_for(round_no: int) -> str:
    return f"Story {round_no}. {PROMPT}"  # a new opening each round: no prompt cache reuse


def timed_run(worker: Backend, prompt: str, tokens: int) -> tuple[float, float]:
    """(generation tok/s, time to first token in s) of `run`'s path, as its caller sees them."""
    params = GenerationParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    request = single_turn(Kind.BASE, False, prompt, params)  # raw text, as /v1/completions gives it
    start = time.perf_counter()
    first = last = 0.0
    n = 0
    for event in worker.stream(request):
        if isinstance(event, TokenEvent):
            last = time.perf_counter()
            first = first or last
            n += 1
    return (n - 1) / (last - first), first - start


def timed_http(url: str, model: str, prompt: str, tokens: int) -> tuple[float, float]:
    """(generation tok/s, time to first token in s) of a streamed /v1/completions request."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "n_predict": tokens,  # llama-server's name for max_tokens on /completion; ignored by ours
    }
    start = time.perf_counter()
    first = last = 0.0
    n = 0
    with CLIENT.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk["choices"] and chunk["choices"][0]["text"]:
                last = time.perf_counter()
                first = first or last
            predicted = chunk.get("timings", {}).get("predicted_n")
            n = predicted or n
    # The worker sends the first token alone at once; the rest arrive in batches.
    return (n - 1) / (last - first), first - start


@contextlib.contextmanager
def ondevice_server(model, options: LoadOptions) -> Iterator[str]:
    pool = ModelPool({"model": model}, options_for=lambda m: options, find=None, keep_alive=None)
    with serving_in_thread(create_app(pool), pool) as url:
        yield url


@contextlib.contextmanager
def llama_server(path: str, threads: int, n_ctx: int) -> Iterator[str | None]:
    binary = shutil.which("llama-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "-m", path, "-t", str(threads), "-c", str(n_ctx), "--port", str(port), "--no-repack"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", nargs="?", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--extra-bufts", choices=[e.value for e in ExtraBufts], default="auto")
    args = parser.parse_args()

    model = resolve(args.ref)
    options = LoadOptions(n_ctx=args.ctx, n_threads=args.threads, extra_bufts=ExtraBufts(args.extra_bufts))
    with open_model(model, options) as worker:
        # The server's worker loads with what `auto` settled on for the direct one.
        options = replace(options, extra_bufts=ExtraBufts.ON if worker.facts.extra_bufts else ExtraBufts.OFF)
        print(
            f"{model.display_name}: {args.tokens} tokens, {args.threads} threads, n_ctx {args.ctx}, "
            f"extra buffer types {'on' if worker.facts.extra_bufts else 'off'}, {args.rounds} rounds"
        )
        with (
            ondevice_server(model, options) as url,
            llama_server(str(model.path), args.threads, args.ctx) as bare,
        ):
            timed_http(url, "model", "Warm up.", 8)  # loads the server's worker
            timed_run(worker, "Warm up.", 8)
            if bare:
                timed_http(bare, "model", "Warm up.", 8)
            rows: dict[str, list[tuple[float, float]]] = {"run": [], "serve": [], "llama-server": []}
            for i in range(args.rounds):
                rows["run"].append(timed_run(worker, prompt_for(i), args.tokens))
                rows["serve"].append(timed_http(url, "model", prompt_for(i), args.tokens))
                if bare:
                    rows["llama-server"].append(timed_http(bare, "model", prompt_for(i), args.tokens))
                line = "  ".join(
                    f"{k} {v[-1][0]:7.1f} tok/s ttft {v[-1][1] * 1000:6.1f} ms" for k, v in rows.items() if v
                )
                print(f"round {i + 1}: {line}")
    medians = {
        k: (statistics.median(r for r, _ in v), statistics.median(t for _, t in v))
        for k, v in rows.items()
        if v
    }
    for name, (rate, ttft) in medians.items():
        print(f"median {name:>12}: {rate:7.1f} tok/s generation, {ttft * 1000:7.1f} ms to first token")
    run_rate, run_ttft = medians["run"]
    serve_rate, serve_ttft = medians["serve"]
    ratios = [s[0] / r[0] for s, r in zip(rows["serve"], rows["run"], strict=True)]
    print(
        f"serve / run generation tok/s: {serve_rate / run_rate:.3f} (median of per-round ratios "
        f"{statistics.median(ratios):.3f}; goal >= 0.95)"
    )
    extra = [(s[1] - r[1]) * 1000 for s, r in zip(rows["serve"], rows["run"], strict=True)]
    print(
        f"HTTP path's time-to-first-token overhead: {statistics.median(extra):+.1f} ms (median of "
        f"per-round differences; {(serve_ttft - run_ttft) * 1000:+.1f} ms between the medians)"
    )
    if "llama-server" in medians:
        bare_rate, bare_ttft = medians["llama-server"]
        print(
            f"llama-server / run generation tok/s: {bare_rate / run_rate:.3f}; "
            f"its time to first token {bare_ttft * 1000:.1f} ms"
        )
    else:
        print("llama-server: not on PATH, not compared")


if __name__ == "__main__":
    main()
