"""`ondevice imatrix` against `llama-imatrix` on the same model, text and chunks.

Times ours (the chunks only, from the first to the last reply of the worker, and end to end); if
llama-imatrix is on PATH (or given with --llama-imatrix), runs it with the same -f, -c and --chunks
(and --no-ppl: ours computes no perplexity), takes its decode time from llama_perf_context_print and
its wall time, and prints the throughput ratio (goal: ours >= 0.9x llama-imatrix's tokens/s). The two
matrices are then compared entry by entry: the same names and counts, and the relative difference of
the per-column means (||ours - theirs|| / ||theirs||), median and worst.

    python benchmarks/imatrix_vs_llama.py [MODEL] [-f TEXT] [-c 512] [--chunks 8] [-t THREADS]
        [--llama-imatrix PATH]

Without MODEL, SmolLM2's bundled file is dequantized to F16 (in a temporary store). Without -f, the
default calibration text (the standard library's module docstrings) is written to a file for both.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ondevice.calibration_text import load_calibration_text
from ondevice.imatrix import run_imatrix
from ondevice.imatrix_file import ImportanceMatrix, read_imatrix, write_imatrix
from ondevice.refs import ResolvedModel, resolve
from ondevice.runtime.extra_bufts import use_extra_bufts
from ondevice.runtime.protocol import LoadOptions

GOAL = 0.9
PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")


def default_model(work: Path) -> ResolvedModel:
    """SmolLM2's bundled Q4_1 dequantized to F16, as the tests use it."""
    from ondevice.converters.dequantize import convert_gguf
    from ondevice.store import Store

    f16 = convert_gguf("bundled:smollm2-135m-instruct", "f16", name="smol", store=Store(work / "store"))
    return resolve(str(f16.path))


def llama_imatrix(exe: str, args: list[str]) -> tuple[float, float | None, int | None]:
    """Wall seconds, and the decode seconds and tokens llama.cpp reports."""
    started = time.perf_counter()
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise SystemExit(f"llama-imatrix failed ({done.returncode}):\n" + "\n".join(tail))
    found = PROMPT_EVAL.search(done.stdout + done.stderr)
    return wall, (float(found.group(1)) / 1000 if found else None), (int(found.group(2)) if found else None)


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
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("-t", "--threads", type=int, default=None)
    parser.add_argument("--llama-imatrix", default=shutil.which("llama-imatrix"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ondevice-vs-imatrix-") as tmp:
        work = Path(tmp)
        model = resolve(args.model) if args.model else default_model(work)
        text, dataset = load_calibration_text(args.text)
        text_file = work / "calibration.txt"
        text_file.write_text(text, encoding="utf-8")
        started = time.perf_counter()
        run = run_imatrix(
            model,
            text,
            args.chunks,
            args.ctx_size,
            dataset=dataset,
            options=LoadOptions(n_threads=args.threads),
        )
        ours_wall = time.perf_counter() - started
        ours_path = write_imatrix(run.matrix, work / "ours.gguf")
        print(
            f"{model.display_name}: {run.matrix.chunk_count} chunks of {args.ctx_size} tokens from {dataset}"
        )
        print(
            f"  ondevice imatrix: {run.tokens_per_second:8.1f} tokens/s over the chunks "
            f"({run.seconds:.2f} s), {ours_wall:.2f} s end to end"
        )
        if not args.llama_imatrix:
            print(
                "  llama-imatrix is not on PATH: nothing to compare with (build llama.cpp's tools to run it)"
            )
            return
        theirs_path = work / "theirs.gguf"
        common = ["-m", str(model.path), "-f", str(text_file), "-o", str(theirs_path), "--no-ppl"]
        common += ["-c", str(args.ctx_size), "--chunks", str(args.chunks), "-b", str(args.ctx_size)]
        if args.threads:
            common += ["-t", str(args.threads)]
        if not use_extra_bufts():  # ours found that this CPU's extra buffer types crash: so would theirs
            common.append("--no-repack")
        wall, decode_seconds, tokens = llama_imatrix(args.llama_imatrix, common)
        if decode_seconds and tokens:
            theirs_tps = tokens / decode_seconds
            print(
                f"  llama-imatrix:    {theirs_tps:8.1f} tokens/s over the chunks ({decode_seconds:.2f} s), "
                f"{wall:.2f} s end to end"
            )
            ratio = run.tokens_per_second / theirs_tps
            verdict = "meets" if ratio >= GOAL else "misses"
            print(f"  throughput ratio ours/theirs: {ratio:.3f} ({verdict} the goal of {GOAL})")
        print(f"  end-to-end ratio ours/theirs (time): {ours_wall / wall:.3f}")
        compare(read_imatrix(ours_path), read_imatrix(theirs_path))


if __name__ == "__main__":
    main()
