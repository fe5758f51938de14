"""The speed a compare column shows against `ondevice bench`'s tg, same model and threads.

The terminal UI runs headless (Textual's test driver renders every frame to a virtual screen, so
drawing costs what it costs on a real terminal) in one-after-another mode; the column's final
tokens/s is compared with the bench's token-generation figure, alternating in one run.

    python benchmarks/tui_vs_bench.py [--rounds 3] [--tokens 128] [REF ...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from textual.widgets import Input

from ondevice.live import LiveStats, ModelSpec
from ondevice.refs import resolve
from ondevice.runtime.engine import Backend, open_model, single_turn
from ondevice.runtime.llama_params import default_threads
from ondevice.runtime.protocol import GenerationParams, LoadOptions, TokenEvent
from ondevice.tui.app import OndeviceApp

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


async def column_speed(spec: ModelSpec, tokens: int) -> float:
    params = GenerationParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    app = OndeviceApp([spec], defaults=params)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.compare.columns[0].status == "loading":
            await pilot.pause(0.1)
        app.compare.query_one("#prompt", Input).value = PROMPT
        app.compare.query_one("#prompt", Input).focus()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        column = app.compare.columns[0]
        assert column.status == "done", column.error
        return column.live.tokens_per_second


def plain_speed(worker: Backend, spec: ModelSpec, tokens: int) -> float:
    """The same answer without the UI: the engine's stream read in a loop, timed as the column times it."""
    params = GenerationParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    live = LiveStats()
    worker.reset()
    request = single_turn(spec.kind, bool(worker.facts.chat_template), PROMPT, params)
    for event in worker.stream(request):
        if isinstance(event, TokenEvent):
            live.add(event)
    return live.tokens_per_second


def bench(ref: str, rounds: int, tokens: int, threads: int) -> float:
    model = resolve(ref)
    options = LoadOptions(n_ctx=2048, n_threads=threads)
    spec = ModelSpec.from_resolved(model, options)
    shown, benched, plain = [], [], []
    with open_model(model, options) as worker:
        worker.bench("tg", tokens)  # warm-up
        asyncio.run(column_speed(spec, tokens))
        print(f"\n{model.display_name}, {threads} threads, {tokens} tokens")
        for r in range(rounds):
            shown.append(asyncio.run(column_speed(spec, tokens)))
            timing = worker.bench("tg", tokens)
            benched.append(timing.n_tokens / timing.seconds)
            plain.append(plain_speed(worker, spec, tokens))
            print(
                f"  round {r + 1}: compare column {shown[-1]:6.1f} tok/s   bench tg {benched[-1]:6.1f} tok/s"
                f"   same answer without the UI {plain[-1]:6.1f} tok/s"
            )
    column, tg, alone = (statistics.median(x) for x in (shown, benched, plain))
    ratio = column / tg
    print(
        f"  median: column {column:.1f}, bench {tg:.1f}, ratio {ratio:.3f}; without the UI {alone:.1f} "
        f"(that/bench {alone / tg:.3f}: sampling and the decode loop; "
        f"column/that {column / alone:.3f}: the UI's own share)"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("refs", nargs="*", default=["bundled:smollm2-135m-instruct", "bundled:gemma-3-270m"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    ratios = {ref: bench(ref, args.rounds, args.tokens, args.threads) for ref in args.refs}
    print("\nratio column/bench tg (goal >= 0.95):")
    for ref, ratio in ratios.items():
        print(f"  {ref}: {ratio:.3f} {'ok' if ratio >= 0.95 else 'BELOW GOAL'}")


if __name__ == "__main__":
    main()
