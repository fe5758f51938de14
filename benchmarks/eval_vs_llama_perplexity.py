"""`ondevice eval` against llama-perplexity --kl-divergence on the same model pair, text and chunks.

Prints both tools' PPL, mean KLD and same-top figures (they should agree: KLD within a few percent,
same-top within a point) and the throughput ratio (wall time of llama-perplexity's two runs over
ours). Without llama-perplexity on PATH it says so and exits 0.

    python benchmarks/eval_vs_llama_perplexity.py [MODEL --reference REF] [--ctx 512] [--chunks 8]

Without MODEL, SmolLM2's bundled file is dequantized to F16 (the reference) and quantized from that to
Q4_K_M (the model).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ondevice.measure.quality import QualitySettings, evaluate_quality, load_text
from ondevice.refs import resolve
from ondevice.runtime.extra_bufts import use_extra_bufts
from ondevice.runtime.protocol import LoadOptions

PATTERNS = {
    "ppl": r"Mean PPL\(Q\)\s*:\s*([\d.]+)",
    "kld": r"Mean\s+KLD:\s*(-?[\d.]+)",
    "same_top": r"Same top p:\s*([\d.]+)",
}


def default_pair(work: Path):
    """SmolLM2's bundled file dequantized to F16 (the reference) and a Q4_K_M made from that F16."""
    from ondevice.converters.dequantize import convert_gguf
    from ondevice.converters.quantize import quantize
    from ondevice.store import Store

    store = Store(work / "store")
    f16 = convert_gguf("bundled:smollm2-135m-instruct", "f16", name="smol", store=store)
    (q4,) = quantize(str(f16.path), "q4_k_m", name="smol", store=store)
    return resolve(str(q4.path)), resolve(str(f16.path))


def llama_perplexity(exe: str, args: list[str]) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=True)
    return done.stdout + done.stderr, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?")
    parser.add_argument("--reference")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    exe = shutil.which("llama-perplexity")
    if exe is None:
        print(
            "llama-perplexity is not on PATH: nothing to compare with (install llama.cpp's tools to run this)"
        )
        return
    with tempfile.TemporaryDirectory(prefix="ondevice-vs-perplexity-") as tmp:
        work = Path(tmp)
        if args.model:
            model, reference = resolve(args.model), resolve(args.reference or args.model)
        else:
            model, reference = default_pair(work)
        text, source_name = load_text()
        text_file = work / "text.txt"
        text_file.write_text(text, encoding="utf-8")
        common = [
            "-f",
            str(text_file),
            "-c",
            str(args.ctx),
            "--chunks",
            str(args.chunks),
            "-b",
            str(args.ctx),
        ]
        if args.threads:
            common += ["-t", str(args.threads)]
        settings = QualitySettings(
            n_ctx=args.ctx, n_chunks=args.chunks, options=LoadOptions(n_threads=args.threads)
        )
        started = time.perf_counter()
        run = evaluate_quality([model], reference, text, source_name, settings)
        ours_seconds = time.perf_counter() - started

        # Ours ran first: where llama.cpp's extra buffer types crash this CPU, `auto` has found out, and
        # llama-perplexity runs without them too.
        if not use_extra_bufts():
            common.append("--no-repack")
        base = str(work / "base.kld")
        _, t_ref = llama_perplexity(exe, ["-m", str(reference.path), "--kl-divergence-base", base, *common])
        out, t_model = llama_perplexity(
            exe, ["-m", str(model.path), "--kl-divergence-base", base, "--kl-divergence", *common]
        )
        theirs = {k: float(m.group(1)) for k, p in PATTERNS.items() if (m := re.search(p, out))}
    (q,) = run.quality
    ours = {"ppl": q.ppl.value, "kld": q.kld.value, "same_top": 100 * q.same_top.value}
    print(f"{model.display_name} against {reference.display_name}: {args.chunks} chunks of {args.ctx} tokens")
    for key in ("ppl", "kld", "same_top"):
        mine, other = ours[key], theirs.get(key)
        theirs_text = f"{other:10.5f}  ratio {mine / other:.4f}" if other else "n/a"
        print(f"  {key:9s} ondevice {mine:10.5f}   llama-perplexity {theirs_text}")
    print(
        f"  time: ondevice {ours_seconds:.1f} s, llama-perplexity {t_ref + t_model:.1f} s, "
        f"throughput ratio {(t_ref + t_model) / ours_seconds:.3f}"
    )


if __name__ == "__main__":
    main()
