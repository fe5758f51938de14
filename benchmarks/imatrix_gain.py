"""What an importance matrix buys: KLD and same-top of each level quantized without and with one.

The source is SmolLM2's bundled file dequantized to F16 (in a temporary store), or MODEL. The matrix is
what `quantize --imatrix auto` computes (the standard library's module docstrings, --chunks chunks of
512 tokens); the quality text is `eval`'s default (Python's pydoc topics), which the matrix never saw.
Each level is written plain and with the matrix, and both are measured in one `eval` run against the
source, llama-perplexity's --kl-divergence method over --eval-chunks chunks of --ctx tokens.
Goal (issue #16): KLD with the matrix <= 0.65x without at Q4_K_M and Q2_K.

    python benchmarks/imatrix_gain.py [MODEL] [--levels q4_k_m,q3_k_m,q2_k,iq4_xs] [--chunks 32]
        [--ctx 512] [--eval-chunks 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ondevice.converters.dequantize import convert_gguf
from ondevice.converters.quantize import quantize
from ondevice.imatrix import cached_imatrix
from ondevice.measure.evaluate import EvalSettings, evaluate
from ondevice.measure.report import matrix_gain_markdown
from ondevice.refs import resolve
from ondevice.store import Store

GOAL = 0.65
GOAL_LEVELS = ("Q4_K_M", "Q2_K")
SMOL = "bundled:smollm2-135m-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default=None, help="an F16/F32 GGUF or store ref [SmolLM2 F16]")
    parser.add_argument("--levels", default="q4_k_m,q3_k_m,q2_k,iq4_xs")
    parser.add_argument("--chunks", type=int, default=32, help="calibration chunks of 512 tokens")
    parser.add_argument("--ctx", type=int, default=512, help="tokens per eval chunk")
    parser.add_argument("--eval-chunks", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imatrix-gain-") as home:
        store = Store(Path(home))
        source = (
            resolve(args.model, store)
            if args.model
            else resolve(convert_gguf(SMOL, "f16", store=store).ref, store)
        )
        print(f"source: {source.display_name} ({source.path.name})")
        started = time.perf_counter()
        matrix = cached_imatrix(source, None, args.chunks, 512, store=store)
        print(f"matrix: {args.chunks} chunks of 512 tokens in {time.perf_counter() - started:.1f} s")
        plain = quantize(source, args.levels, store=store)
        imat = quantize(source, args.levels, store=store, imatrix=matrix)
        models = [resolve(r.ref, store) for pair in zip(plain, imat, strict=True) for r in pair]
        settings = EvalSettings(metrics=("ppl", "kld", "top1"), n_ctx=args.ctx, n_chunks=args.eval_chunks)
        run = evaluate(models, source, settings)

    where = f"{run.n_chunks} chunks of {run.n_ctx} tokens of {run.text_source}"
    print(f"\nKLD against {source.display_name} over {where}\n")
    print(matrix_gain_markdown(run))
    kld = {q.model.quant: q.kld.value for q in run.quality if q.kld}
    print()
    for level in GOAL_LEVELS:
        if level in kld and f"{level}-imat" in kld:
            ratio = kld[f"{level}-imat"] / kld[level]
            verdict = "met" if ratio <= GOAL else "NOT met"
            print(f"goal at {level}: imatrix / plain = {ratio:.3f} (goal <= {GOAL}) -> {verdict}")


if __name__ == "__main__":
    main()
