"""Our HF -> GGUF converter against llama.cpp's convert_hf_to_gguf.py: wall time and peak memory.

Both convert the same checkpoint directories to the same output type, each in its own child process
(ours: `ondevice.converters.hf_to_gguf.convert_directory`, called through `python -c`; theirs: the script from
the llama-cpp-python 0.3.36 sdist, with its own gguf-py). With --rounds > 1 the order alternates
(ours, theirs, theirs, ours, ...) and medians are reported. Goal: ours at most half of llama.cpp's
wall time and half of its peak RSS on every model.

How it measures:
- wall: from spawning the child to reaping it (interpreter start-up and imports count for both).
  The checkpoint files are read once before timing, so neither run pays for a cold page cache.
- peak RSS: the kernel's high-water mark of the converter, `ru_maxrss` from `os.wait4`, taken by a
  small launcher process (Linux keeps a process's peak across exec, so a converter spawned straight
  from this script would report the script's own peak if that were larger): exact, no sampling.
  RSS counts the file pages of a memory-mapped checkpoint the converter touched; those are page
  cache the kernel can drop, so the table also shows:
- peak anon: anonymous memory (RSS minus file-backed/shared pages, psutil's rss - shared on Linux)
  summed over the child's process tree, polled every --poll seconds (20 ms); a spike shorter than
  that can be missed. What the converter itself allocated.

The two outputs are then compared with gguf.GGUFReader: tensor names, shapes and types, the largest
absolute difference of the (dequantized) tensor data, and which metadata keys differ.

    python benchmarks/convert_vs_llama_cpp.py [CHECKPOINT_DIR ...] [--outtype f16] [--rounds 3]
        [--llama-cpp-src DIR]

Without CHECKPOINT_DIR, the test suite's cached checkpoints rebuilt from the bundled SmolLM2 and
Gemma 3 GGUFs are used (see tests/support/checkpoints.py). Without --llama-cpp-src, the sdist is downloaded
once with pip into ~/.cache/ondevice-bench/ and convert_hf_to_gguf.py, conversion/ and gguf-py/ are
extracted next to it. llama.cpp's converter needs torch and sentencepiece in this interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import psutil

GOAL = 0.5
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
SDIST_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{SDIST_VERSION}"
LLAMA_CPP_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
DEFAULT_MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
BENCH_CACHE = Path.home() / ".cache" / "ondevice-bench"
NAMES = {"ours": "our", "theirs": "llama.cpp's"}
CHUNK_ELEMENTS = 1 << 24  # tensors are compared this many values at a time

OURS_CODE = (
    "import sys; from pathlib import Path; from ondevice.converters.hf_to_gguf import convert_directory; "
    "convert_directory(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])"
)


# Runs the converter and reports its own peak RSS. Linux carries a process's high-water RSS across
# exec, so a converter spawned straight from this (large) process would inherit our peak; spawned from
# this small launcher, the figure is the converter's alone.
LAUNCHER = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[2:]); "
    "_, status, usage = os.wait4(child.pid, 0); open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


class BenchError(Exception):
    """Bad input or a failed run; printed as one line."""


@dataclass(frozen=True)
class Run:
    """One converter run: wall seconds, peak RSS and peak anonymous memory in bytes."""

    wall_s: float
    peak_rss: int
    peak_anon: int | None


def test_cache_root() -> Path:
    """Where tests/support/checkpoints.py keeps rebuilt checkpoints (same rule as its cache_root())."""
    default = Path.home() / ".cache" / "ondevice-tests"
    return Path(os.environ.get("ONDEVICE_TEST_CACHE", default)) / "checkpoints"


def default_checkpoints() -> list[Path]:
    root = test_cache_root()
    found = []
    for label in DEFAULT_MODELS:
        dirs = sorted(p.parent for p in root.glob(f"{label}-*/config.json"))
        if not dirs:
            raise BenchError(
                f"no cached checkpoint {label}-* under {root}: run the converter tests first "
                "(pytest tests/converters/test_hf_to_gguf.py) or build it with "
                "`python tests/support/checkpoints.py FILE.gguf SHA256 LABEL`"
            )
        found.append(dirs[-1])
    return found


def check_checkpoint(directory: Path) -> Path:
    if not directory.is_dir():
        raise BenchError(f"checkpoint directory not found: {directory}")
    if not (directory / "config.json").is_file():
        raise BenchError(f"not a Hugging Face checkpoint (no config.json): {directory}")
    if not any(directory.glob("*.safetensors")):
        raise BenchError(f"no .safetensors files in {directory}")
    return directory.resolve()


def fetch_llama_cpp(cache: Path) -> Path:
    """llama.cpp's converter files from the llama-cpp-python sdist, downloaded and extracted once."""
    target = cache / f"llama.cpp-{SDIST_VERSION}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"{SDIST_NAME}.tar.gz"
    if not sdist.is_file():
        print(f"downloading the llama-cpp-python {SDIST_VERSION} sdist into {cache} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += [f"llama-cpp-python=={SDIST_VERSION}", "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not sdist.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"could not download the llama-cpp-python sdist with pip: {last}")
    prefix = f"{SDIST_NAME}/vendor/llama.cpp/"
    work = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=cache))
    try:
        with tarfile.open(sdist) as tar:
            members = []
            for member in tar.getmembers():
                rel = member.name.removeprefix(prefix)
                if (
                    rel != member.name
                    and rel.startswith(LLAMA_CPP_FILES)
                    and (member.isfile() or member.isdir())
                ):
                    member.name = rel
                    members.append(member)
            tar.extractall(work, members=members, filter="data")
        if not (work / "convert_hf_to_gguf.py").is_file():
            raise BenchError(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
        os.replace(work, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(work)
    return target


def check_llama_cpp(src: Path) -> Path:
    script = src / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise BenchError(f"llama.cpp's converter not found: {script}")
    missing = [name for name in ("torch", "sentencepiece") if importlib.util.find_spec(name) is None]
    if missing:
        raise BenchError(
            f"llama.cpp's converter needs {', '.join(missing)}: {sys.executable} -m pip install "
            + " ".join(missing)
        )
    return script


def warm_page_cache(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass


def _anon_bytes(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            mem = proc.memory_info()
            total += mem.rss - getattr(mem, "shared", 0)
    return total


def measure(label: str, cmd: list[str], log: Path, poll_s: float) -> Run:
    """Run `cmd` to completion; its wall time, kernel peak RSS (wait4) and polled peak anon memory."""
    sample = sys.platform.startswith("linux")  # elsewhere psutil has no `shared` to subtract
    peak_anon = [0]
    stop = threading.Event()
    with open(log, "wb") as out:
        start = time.perf_counter()
        maxrss_file = log.with_suffix(".maxrss")
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(maxrss_file), *cmd], stdout=out, stderr=subprocess.STDOUT
        )

        def poll() -> None:
            try:
                root = psutil.Process(proc.pid)
                while not stop.is_set():
                    peak_anon[0] = max(peak_anon[0], _anon_bytes(root))
                    stop.wait(poll_s)
            except psutil.NoSuchProcess:
                pass

        sampler = threading.Thread(target=poll, daemon=True)
        if sample:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stop.set()
        if sampler.is_alive():
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise BenchError(f"{label} failed (exit {proc.returncode}): {(tail or ['no output'])[-1]}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    del usage  # the launcher's own; the converter's is in the file it wrote
    return Run(wall, int(maxrss_file.read_text()) * scale, peak_anon[0] if sample else None)


def ours_cmd(checkpoint: Path, out: Path, outtype: str) -> list[str]:
    return [sys.executable, "-c", OURS_CODE, str(checkpoint), str(out), outtype]


def theirs_cmd(script: Path, checkpoint: Path, out: Path, outtype: str) -> list[str]:
    return [sys.executable, str(script), str(checkpoint), "--outtype", outtype, "--outfile", str(out)]


def _values(tensor: gguf.ReaderTensor) -> Iterator[np.ndarray]:
    """A tensor's data as float32, a block of rows at a time."""
    data = tensor.data
    rows = data.reshape(-1, data.shape[-1]) if data.ndim else data.reshape(1, 1)
    step = max(1, CHUNK_ELEMENTS // max(1, int(tensor.n_elements) // rows.shape[0]))
    for i in range(0, rows.shape[0], step):
        block = np.ascontiguousarray(rows[i : i + step])
        yield gguf.quants.dequantize(block, tensor.tensor_type).astype(np.float32, copy=False)


def _same_bytes(x: np.ndarray, y: np.ndarray) -> bool:
    a, b = x.view(np.uint8).reshape(-1), y.view(np.uint8).reshape(-1)
    step = CHUNK_ELEMENTS * 4
    return a.size == b.size and all(
        np.array_equal(a[i : i + step], b[i : i + step]) for i in range(0, a.size, step)
    )


def compare(ours: Path, theirs: Path) -> list[str]:
    """Lines describing how the two GGUFs differ: tensors first, then metadata keys."""
    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    lines = []
    only_a, only_b = sorted(set(ta) - set(tb)), sorted(set(tb) - set(ta))
    if only_a or only_b:
        lines.append(f"tensors only in ours: {only_a or '-'}; only in theirs: {only_b or '-'}")
    mismatched, max_diff, worst, identical = [], 0.0, "", 0
    for name in sorted(set(ta) & set(tb)):
        x, y = ta[name], tb[name]
        if x.tensor_type != y.tensor_type or list(x.shape) != list(y.shape):
            mismatched.append(
                f"{name} {x.tensor_type.name}{list(x.shape)} vs {y.tensor_type.name}{list(y.shape)}"
            )
            continue
        if _same_bytes(x.data, y.data):
            identical += 1
            continue
        diff = max(float(np.max(np.abs(cx - cy))) for cx, cy in zip(_values(x), _values(y), strict=True))
        if diff >= max_diff:
            max_diff, worst = diff, name
    common = len(set(ta) & set(tb))
    verdict = "IDENTICAL" if identical == common and not (only_a or only_b) else "differ"
    lines.insert(0, f"tensors: {verdict}: {identical}/{common} byte-identical, max |diff| {max_diff:.3g}")
    if worst:
        lines[0] += f" (in {worst})"
    lines += [f"type/shape mismatch: {m}" for m in mismatched[:8]]
    fa = {k: f for k, f in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: f for k, f in b.fields.items() if not k.startswith("GGUF.")}
    differing = sorted(k for k in set(fa) & set(fb) if fa[k].contents() != fb[k].contents())
    lines.append(f"metadata keys: {len(set(fa) & set(fb))} common, {len(differing)} differ: {differing}")
    lines.append(f"metadata only in ours: {sorted(set(fa) - set(fb))}")
    lines.append(f"metadata only in theirs: {sorted(set(fb) - set(fa))}")
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
        if key in differing:
            lines.append(f"  {key}: ours {fa[key].contents()!r}, theirs {fb[key].contents()!r}")
    return lines


def bench_model(
    checkpoint: Path, script: Path, outtype: str, rounds: int, poll_s: float
) -> dict[str, list[Run]]:
    print(f"\n== {checkpoint.name} ({outtype}, {rounds} round(s))", flush=True)
    warm_page_cache(checkpoint)
    runs: dict[str, list[Run]] = {"ours": [], "theirs": []}
    kept: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="ondevice-convert-bench-") as tmp:
        work = Path(tmp)
        for r in range(rounds):
            order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
            for who in order:
                out = work / f"{who}-{r}.gguf"
                cmd = (
                    ours_cmd(checkpoint, out, outtype)
                    if who == "ours"
                    else theirs_cmd(script, checkpoint, out, outtype)
                )
                run = measure(
                    f"{NAMES[who]} converter on {checkpoint.name}", cmd, work / f"{who}-{r}.log", poll_s
                )
                runs[who].append(run)
                anon = f"{run.peak_anon / 1e6:.0f} MB" if run.peak_anon is not None else "n/a"
                print(
                    f"  round {r + 1} {who:<6}  wall {run.wall_s:6.2f} s  peak RSS "
                    f"{run.peak_rss / 1e6:6.0f} MB  peak anon {anon}",
                    flush=True,
                )
                if who in kept:
                    out.unlink()
                else:
                    kept[who] = out
        for line in compare(kept["ours"], kept["theirs"]):
            print(f"  {line}")
    return runs


def table(name: str, runs: dict[str, list[Run]]) -> tuple[float, float]:
    """Print the medians table; return the (wall, peak RSS) ratios ours/theirs."""
    rows = [
        ("wall s", [r.wall_s for r in runs["ours"]], [r.wall_s for r in runs["theirs"]], 1.0),
        ("peak RSS MB", [r.peak_rss for r in runs["ours"]], [r.peak_rss for r in runs["theirs"]], 1e6),
    ]
    if all(r.peak_anon is not None for r in runs["ours"] + runs["theirs"]):
        anon = [[r.peak_anon for r in runs[who]] for who in ("ours", "theirs")]
        rows.append(("peak anon MB", anon[0], anon[1], 1e6))
    print(f"\n{name} (medians)")
    print(f"  {'':<13}{'ours':>10}{'theirs':>10}{'ours/theirs':>13}")
    ratios = []
    for label, ours, theirs, unit in rows:
        mo, mt = statistics.median(ours) / unit, statistics.median(theirs) / unit
        ratios.append(mo / mt)
        print(f"  {label:<13}{mo:>10.2f}{mt:>10.2f}{mo / mt:>13.3f}")
    return ratios[0], ratios[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="*", type=Path, help="HF checkpoint directories")
    parser.add_argument("--outtype", choices=OUTTYPES, default="f16")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each converter per model")
    parser.add_argument(
        "--llama-cpp-src", type=Path, help="llama.cpp tree with convert_hf_to_gguf.py, gguf-py"
    )
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE, help="where the sdist is kept")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between anon-memory samples")
    args = parser.parse_args()
    try:
        if args.rounds < 1:
            raise BenchError("--rounds must be at least 1")
        checkpoints = [check_checkpoint(p) for p in args.checkpoints] or default_checkpoints()
        src = args.llama_cpp_src if args.llama_cpp_src else fetch_llama_cpp(args.cache_dir)
        script = check_llama_cpp(src)
        print(f"llama.cpp converter: {script}")
        results = {p.name: bench_model(p, script, args.outtype, args.rounds, args.poll) for p in checkpoints}
    except (BenchError, OSError) as exc:
        sys.exit(f"error: {exc}")
    verdicts = {name: table(name, runs) for name, runs in results.items()}
    print(f"\ngoal: ours/theirs <= {GOAL} for both wall time and peak RSS")
    for name, (wall, rss) in verdicts.items():
        met = "met" if wall <= GOAL and rss <= GOAL else "NOT met"
        print(f"  {name}: wall {wall:.3f}, peak RSS {rss:.3f} -> {met}")


if __name__ == "__main__":
    main()
