"""What an importance matrix buys: KLD and same-top of each level quantized without and with one.

The source is SmolLM2's bundled file dequantized to F16 (in a temporary store), or MODEL. The matrix is
what `quantize --imatrix auto` computes (the standard library's module docstrings, --chunks chunks of
512 tokens), or one over --text FILE; the quality text is `eval`'s default (Python's pydoc topics),
which the default matrix never saw. Each level is written plain and with the matrix, and both are
measured in one `eval` run against the source, llama-perplexity's --kl-divergence method over
--eval-chunks chunks of --ctx tokens.

When llama.cpp's own tools are found (--llama-tools DIR, else llama-quantize's directory on PATH), the
same is done with them alone, side by side: llama-imatrix over the same text and chunks, llama-quantize
with and without its matrix, llama-perplexity --kl-divergence on the same text. So a ratio that misses
the goal can be told apart: ondevice's collector and quantizer, or llama.cpp's method on this model.
Goal (issue #16): KLD with the matrix <= 0.65x without at Q4_K_M and Q2_K.

    python benchmarks/imatrix_gain.py [MODEL] [--levels q4_k_m,q3_k_m,q2_k,iq4_xs] [--chunks 32]
        [--text FILE] [--ctx 512] [--eval-chunks 16] [--llama-tools DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ondevice.calibration_text import load_calibration_text
from ondevice.converters.dequantize import convert_gguf
from ondevice.converters.quantize import quantize
from ondevice.imatrix import DEFAULT_CTX, cached_imatrix
from ondevice.measure.evaluate import EvalSettings, evaluate
from ondevice.measure.quality import load_text
from ondevice.measure.report import matrix_gain_markdown
from ondevice.quant_names import quant_name
from ondevice.refs import resolve
from ondevice.runtime.extra_bufts import use_extra_bufts
from ondevice.store import Store

GOAL = 0.65
GOAL_LEVELS = ("Q4_K_M", "Q2_K")
SMOL = "bundled:smollm2-135m-instruct"
TOOLS = ("llama-imatrix", "llama-quantize", "llama-perplexity")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default=None, help="an F16/F32 GGUF or store ref [SmolLM2 F16]")
    parser.add_argument("--levels", default="q4_k_m,q3_k_m,q2_k,iq4_xs")
    parser.add_argument("--chunks", type=int, default=32, help="calibration chunks of 512 tokens")
    parser.add_argument("--text", type=Path, default=None, help="calibration text [the stdlib's docstrings]")
    parser.add_argument("--ctx", type=int, default=512, help="tokens per eval chunk")
    parser.add_argument("--eval-chunks", type=int, default=16)
    parser.add_argument("--llama-tools", type=Path, default=_tools_on_path(), help="llama.cpp's bin dir")
    args = parser.parse_args()
    calibration, dataset = load_calibration_text(args.text)

    with tempfile.TemporaryDirectory(prefix="imatrix-gain-") as home:
        store = Store(Path(home) / "store")
        source = (
            resolve(args.model, store)
            if args.model
            else resolve(convert_gguf(SMOL, "f16", store=store).ref, store)
        )
        print(f"source: {source.display_name} ({source.path.name})")
        started = time.perf_counter()
        matrix = cached_imatrix(source, calibration, args.chunks, DEFAULT_CTX, store=store, dataset=dataset)
        took = time.perf_counter() - started
        print(f"matrix: {args.chunks} chunks of 512 tokens of {dataset} in {took:.1f} s")
        plain = quantize(source, args.levels, store=store)
        imat = quantize(source, args.levels, store=store, imatrix=matrix)
        models = [resolve(r.ref, store) for pair in zip(plain, imat, strict=True) for r in pair]
        settings = EvalSettings(metrics=("ppl", "kld", "top1"), n_ctx=args.ctx, n_chunks=args.eval_chunks)
        run = evaluate(models, source, settings)
        ours = {q.model.quant: q.kld.value for q in run.quality if q.kld}

        where = f"{run.n_chunks} chunks of {run.n_ctx} tokens of {run.text_source}"
        print(f"\nKLD against {source.display_name} over {where}\n")
        print(matrix_gain_markdown(run))
        print()
        _verdicts("ondevice", ours)

        if args.llama_tools is None or not all((args.llama_tools / t).is_file() for t in TOOLS):
            print(f"\nllama.cpp's tools ({', '.join(TOOLS)}) not found: no side-by-side run with them")
            return
        print(f"\nThe same with llama.cpp's own tools ({args.llama_tools}):")
        theirs = _llama_side(args, source.path, calibration, [r.level for r in plain], Path(home))
        print("\n| file | KLD ondevice | KLD llama.cpp | ondevice / llama.cpp |")
        print("| ---- | -----------: | ------------: | -------------------: |")
        for quant, kld in theirs.items():
            mine = ours.get(quant)
            ratio = f"{mine / kld:.3f}" if mine is not None else "-"
            print(f"| {quant} | {mine if mine is not None else float('nan'):.5f} | {kld:.5f} | {ratio} |")
        print()
        _verdicts("llama.cpp", theirs)


def _tools_on_path() -> Path | None:
    found = shutil.which("llama-quantize")
    return Path(found).parent if found else None


def _verdicts(who: str, kld: dict[str, float]) -> None:
    for level in GOAL_LEVELS:
        if level in kld and quant_name(level, imatrix=True) in kld:
            ratio = kld[quant_name(level, imatrix=True)] / kld[level]
            verdict = "met" if ratio <= GOAL else "NOT met"
            print(f"{who}: goal at {level}: imatrix / plain = {ratio:.3f} (goal <= {GOAL}) -> {verdict}")


def _llama_side(
    args: argparse.Namespace, source: Path, calibration: str, levels: list[str], work: Path
) -> dict[str, float]:
    """Mean KLD of each level, plain and with llama-imatrix's matrix, by llama.cpp's tools alone."""
    # ondevice ran first: where this CPU's extra buffer types crash, auto has found out.
    no_repack = [] if use_extra_bufts() else ["--no-repack"]
    tools = args.llama_tools
    calibration_file, eval_file = work / "calibration.txt", work / "eval.txt"
    calibration_file.write_text(calibration, encoding="utf-8")
    eval_file.write_text(load_text(None)[0], encoding="utf-8")
    matrix, base = work / "llama-imatrix.gguf", work / "reference.kld"
    ctx, chunks = str(DEFAULT_CTX), str(args.chunks)
    calibration_flags = ["-f", calibration_file, "-c", ctx, "-b", ctx, "--chunks", chunks, "--no-ppl"]
    _run(tools / "llama-imatrix", "-m", source, *calibration_flags, "-o", matrix, *no_repack)
    eval_flags = [
        "-c",
        str(args.ctx),
        "--chunks",
        str(args.eval_chunks),
        "--kl-divergence-base",
        base,
        *no_repack,
    ]
    _run(tools / "llama-perplexity", "-m", source, "-f", eval_file, *eval_flags)
    kld: dict[str, float] = {}
    for level in levels:
        for with_matrix in (False, True):
            quantized = work / f"{quant_name(level, imatrix=with_matrix)}.gguf"
            _run(
                tools / "llama-quantize",
                *(["--imatrix", matrix] if with_matrix else []),
                source,
                quantized,
                level,
            )
            log = _run(tools / "llama-perplexity", "-m", quantized, *eval_flags, "--kl-divergence")
            found = re.search(r"^Mean\s+KLD:\s+([-\d.eE]+)", log, re.MULTILINE)
            if found is None:
                raise SystemExit(f"llama-perplexity printed no mean KLD for {quantized.name}:\n{log[-2000:]}")
            kld[quantized.stem] = float(found.group(1))
            print(f"  {quantized.stem}: mean KLD {kld[quantized.stem]:.5f}")
    return kld


def _run(exe: Path, *args: object) -> str:
    done = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{exe.name} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout + done.stderr


if __name__ == "__main__":
    main()
