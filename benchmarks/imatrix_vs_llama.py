"""`ondevice imatrix` against `llama-imatrix` on the same model, text and chunks.

Throughput is measured the same way for both, over chunks 2..N (the first chunk carries one-off costs,
and llama-imatrix reports nothing finer: with its eval callback llama_perf_context_print's prompt time
is meaningless): ours from the progress event that starts chunk 2 to the last chunk's end; theirs from
its "seconds per pass" line (printed when chunk 1 is done) to its exit. llama-imatrix (on PATH, or
--llama-imatrix) runs with the same -f, -c and --chunks, -b equal to -c, and --no-ppl (ours computes
no perplexity). Rounds alternate the order; the ratio is the median of each round's ours/theirs.
Goal: ours >= 0.9x llama-imatrix's tokens/s. End-to-end wall times are printed too.
The two matrices are then compared entry by entry: the same names and counts, and the relative
difference of the per-column means (||ours - theirs|| / ||theirs||), median and worst.

    python benchmarks/imatrix_vs_llama.py [MODEL] [-f TEXT] [-c 512] [--chunks 8] [-t THREADS]
        [--rounds 3] [--llama-imatrix PATH]

Without MODEL, SmolLM2's bundled file is dequantized to F16 (in a temporary store). Without -f, the
default calibration text (the standard library's module docstrings) is written to a file for both.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ondevice.calibration_text import load_calibration_text
from ondevice.imatrix import ImatrixRun, run_imatrix
from ondevice.imatrix_file import ImportanceMatrix, read_imatrix, write_imatrix
from ondevice.progress import Progress
from ondevice.refs import ResolvedModel, resolve
from ondevice.runtime.extra_bufts import use_extra_bufts
from ondevice.runtime.protocol import LoadOptions

GOAL = 0.9
FIRST_PASS = "seconds per pass"


def default_model(work: Path) -> ResolvedModel:
    """SmolLM2's bundled Q4_1 dequantized to F16, as the tests use it."""
    from ondevice.converters.dequantize import convert_gguf
    from ondevice.store import Store

    f16 = convert_gguf("bundled:smollm2-135m-instruct", "f16", name="smol", store=Store(work / "store"))
    return resolve(str(f16.path))


def llama_imatrix(exe: str, args: list[str]) -> tuple[float, float]:
    """Wall seconds, and seconds from the end of its first chunk to its exit."""
    started = time.perf_counter()
    first_done = None
    lines = []
    with subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            if first_done is None and FIRST_PASS in line:
                first_done = time.perf_counter()
    ended = time.perf_counter()
    if child.returncode != 0 or first_done is None:
        raise SystemExit(f"llama-imatrix failed ({child.returncode}):\n" + "".join(lines[-5:]))
    return ended - started, ended - first_done


def compare(ours: ImportanceMatrix, theirs: ImportanceMatrix) -> None:
    names = sorted(ours.entries)
    if names != sorted(theirs.entries):
        only_ours = sorted(set(ours.entries) - set(theirs.entries))
        only_theirs = sorted(set(theirs.entries) - set(ours.entries))
        print(f"  entries differ: only ours {only_ours[:3]}..., only theirs {only_theirs[:3]}...")
        names = sorted(set(ours.entries) & set(theirs.entries))
    differences = []
    counts_equal = True
    for name in names:
        a, b = ours.entries[name], theirs.entries[name]
        counts_equal &= bool(np.array_equal(a.counts, b.counts))
        mine, other = a.means(), b.means()
        differences.append(float(np.linalg.norm(mine - other) / max(np.linalg.norm(other), 1e-30)))
    worst = int(np.argmax(differences))
    print(
        f"  matrices: {len(names)} common entries, counts {'equal' if counts_equal else 'DIFFER'}; relative "
        f"difference of the means: median {np.median(differences):.2e}, worst {differences[worst]:.2e} "
        f"({names[worst]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?")
    parser.add_argument("-f", "--text", type=Path, default=None)
    parser.add_argument("-c", "--ctx-size", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=8, help="at least 2")
    parser.add_argument("-t", "--threads", type=int, default=None)
    parser.add_argument("--llama-imatrix", default=shutil.which("llama-imatrix"))
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/theirs; medians reported")
    args = parser.parse_args()
    if args.chunks < 2:
        parser.error("--chunks must be at least 2: throughput is measured over chunks 2..N")
    with tempfile.TemporaryDirectory(prefix="ondevice-vs-imatrix-") as tmp:
        work = Path(tmp)
        model = resolve(args.model) if args.model else default_model(work)
        text, dataset = load_calibration_text(args.text)
        text_file = work / "calibration.txt"
        text_file.write_text(text, encoding="utf-8")
        theirs_path = work / "theirs.gguf"
        common = ["-m", str(model.path), "-f", str(text_file), "-o", str(theirs_path), "--no-ppl"]
        common += ["-c", str(args.ctx_size), "--chunks", str(args.chunks), "-b", str(args.ctx_size)]
        if args.threads:
            common += ["-t", str(args.threads)]
        ours: list[float] = []
        theirs: list[float] = []
        for r in range(args.rounds):
            order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
            for side in order:
                if side == "ours":
                    run, tps, wall = _ours(model, text, dataset, args)
                    ours.append(tps)
                    write_imatrix(run.matrix, work / "ours.gguf")
                    n = run.matrix.chunk_count
                    print(f"  round {r + 1}: ondevice imatrix {tps:8.1f} tokens/s, {wall:.2f} s end to end")
                elif args.llama_imatrix:
                    # Ours ran first: where extra buffer types crash this CPU, auto has found out.
                    flags = common if use_extra_bufts() else [*common, "--no-repack"]
                    wall, later_seconds = llama_imatrix(args.llama_imatrix, flags)
                    theirs.append((args.chunks - 1) * args.ctx_size / later_seconds)
                    print(
                        f"  round {r + 1}: llama-imatrix    {theirs[-1]:8.1f} tokens/s, "
                        f"{wall:.2f} s end to end"
                    )
        print(
            f"{model.display_name}: {n} chunks of {args.ctx_size} tokens from {dataset}, "
            f"tokens/s over chunks 2..{n}"
        )
        print(f"  ondevice imatrix: median {statistics.median(ours):8.1f} tokens/s")
        if not theirs:
            print(
                "  llama-imatrix is not on PATH: nothing to compare with (build llama.cpp's tools to run it)"
            )
            return
        # Each round's two runs are neighbours in time: their ratio survives the load of a shared
        # machine changing between rounds better than a ratio of medians does.
        ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
        verdict = "meets" if ratio >= GOAL else "misses"
        print(f"  llama-imatrix:    median {statistics.median(theirs):8.1f} tokens/s")
        print(
            f"  throughput ratio ours/theirs (per round, median): {ratio:.3f} ({verdict} the goal of {GOAL})"
        )
        compare(read_imatrix(work / "ours.gguf"), read_imatrix(theirs_path))


def _ours(
    model: ResolvedModel, text: str, dataset: str, args: argparse.Namespace
) -> tuple[ImatrixRun, float, float]:
    """One run of ours: the matrix, tokens/s over chunks 2..N (from the progress events), wall seconds."""
    stamps: dict[str, float] = {}

    def stamp(event: Progress) -> None:
        stamps[event.step] = time.perf_counter()

    started = time.perf_counter()
    run = run_imatrix(
        model,
        text,
        args.chunks,
        args.ctx_size,
        stamp,
        dataset=dataset,
        options=LoadOptions(n_threads=args.threads),
    )
    wall = time.perf_counter() - started
    n = run.matrix.chunk_count
    return run, (n - 1) * args.ctx_size / (stamps["done"] - stamps[f"chunk 2/{n}"]), wall


if __name__ == "__main__":
    main()
