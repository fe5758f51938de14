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

The two outputs are then compared with gguf.GGUFReader (compare(), over plain data in
metadata_differences() and tensor_differences()): every metadata key, its type and its value (arrays
element by element, with the first few differing elements shown; floats within a relative 1e-6), every
tensor's name, shape and type, and the largest absolute difference of the (dequantized) data of the
tensors both have alike. Each difference is printed as a row (key or tensor, ours, theirs) and marked
with why it is expected (EXPLAINED), or UNEXPLAINED.

    python benchmarks/convert_vs_llama_cpp.py [CHECKPOINT_DIR | NAME ...] [--outtype f16] [--rounds 3]
        [--llama-cpp-src DIR]

Without arguments, every default is used (NAME picks some of them): the test suite's cached checkpoints
rebuilt from the bundled SmolLM2 and Gemma 3 GGUFs (tests/support/checkpoints.py; run the converter
tests once to build them), and its tiny random checkpoints of each other family we convert, built here
with tests/support/convert.py, convert_phi3.py or llama3.py (TINY_FAMILIES). Without --llama-cpp-src,
the sdist is downloaded once with pip into ~/.cache/ondevice-bench/ and convert_hf_to_gguf.py, conversion/ and
gguf-py/ are extracted next to it. llama.cpp's converter needs torch and sentencepiece in this
interpreter (it imports sentencepiece before looking for a tokenizer.model).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib.util
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import psutil

GOAL = 0.5
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
SDIST_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{SDIST_VERSION}"
LLAMA_CPP_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
ROOT = Path(__file__).resolve().parent.parent
# The test suite's checkpoints rebuilt from the bundled GGUFs (tests/support/checkpoints.py), by label.
BUNDLED_MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
# The test suite's tiny random checkpoints, built by build_tiny_FAMILY in tests/support/convert.py, each
# with the tokenizer.ggml.pre llama.cpp's converter gives the real family. It recognises a
# pre-tokenizer by hashing the tokens a fixed text becomes, which no small trained vocabulary matches,
# so for these it is told the name (only where its own lookup fails). A new family is one line here.
TINY_FAMILIES = {
    "qwen2": "qwen2",
    "qwen3": "qwen2",  # Qwen3 kept Qwen2's tokenizer
    # From tests/support/convert_phi3.py. Not its Phi-3.5-mini: llama.cpp's converter reads that
    # family's vocabulary from a tokenizer.model only, which a tokenizer trained here does not have.
    "phi4_mini": "gpt-4o",
    # From tests/support/llama3.py.
    "llama32": "llama-bpe",
    "smollm3": "llama-bpe",  # SmolLM3 kept Llama 3's tokenizer
}
BENCH_CACHE = Path.home() / ".cache" / "ondevice-bench"
NAMES = {"ours": "our", "theirs": "llama.cpp's"}
CHUNK_ELEMENTS = 1 << 24  # tensors are compared this many values at a time
FLOAT_REL_TOL = 1e-6  # metadata floats: a few float32 ulps
CELL_WIDTH = 60  # characters of a long value shown in the differences table
ELEMENT_WIDTH = 24  # characters of one array element shown
SHOWN_ELEMENTS = 3  # differing elements of an array shown


@dataclass(frozen=True)
class Expected:
    """A difference accounted for: fnmatch patterns on the checkpoint directory's name and on the key or
    tensor, which side has it ("ours", "theirs": only that side; "both": both, with other values), and
    why the two converters write it differently."""

    models: str
    items: str
    present: str
    why: str


GENERAL = (
    "llama.cpp's converter guesses a display name, base name, fine-tune, size label and type from the "
    "directory's name (and the model card, which these checkpoints lack; tests/support/checkpoints.py's "
    "cache key became a fine-tune); it names files from them. Ours writes general.name alone, from "
    "config.json's _name_or_path or the directory. Neither is read for inference."
)
VOCAB_SIZE = (
    "Ours states the vocabulary size (the length of its token list, padded to the embedding rows); "
    "llama.cpp's converter leaves it to the loader, which takes the token list's length: the same number."
)
SPACE_PREFIX = (
    "llama.cpp's converter writes add_space_prefix only for SentencePiece vocabularies; for a BPE ('gpt2') "
    "one its loader sets it false, the value ours writes."
)
HEAD_DIM = (
    "llama.cpp's converter writes the key/value head width whenever config.json states head_dim; ours only "
    "where it is not hidden_size / heads, the loader's default (SmolLM2: 576 / 9 = 64): the same width."
)
NO_BOS = (
    "Ours writes add_bos_token false for a 'gpt2' vocabulary whose tokenizer.json post-processor and "
    "tokenizer_config.json add no BOS (transformers then adds none); llama.cpp's converter leaves the key "
    "out, and its loader adds a BOS by default only for a few pre-tokenizers (llama-bpe among them), not "
    "for qwen2 or gpt-4o: the same tokens there. For a llama-bpe vocabulary (the tiny SmolLM3) its "
    "output would add a BOS that transformers does not; ours follows transformers."
)
GRANITE_BOS = (
    "llama.cpp's LlamaModel writes add_bos_token false for every llama checkpoint with a 49152-token "
    "vocabulary (meant for Granite's small models; SmolLM2 has that size too). Without the key its loader "
    "adds no BOS to a 'gpt2' vocabulary with this pre-tokenizer either: the same tokens."
)
SMOLLM2_PRE = (
    "The checkpoint rebuilt from the GGUF lost SmolLM2's Digits step: its tokenizer.json splits with the "
    "GPT-2 regex alone, which ours reads ('gpt-2'); llama.cpp recognises the vocabulary by its hash and "
    "names the real model's 'smollm'. From the Hub's tokenizer.json ours writes 'smollm' too "
    "(test_smollm2s_own_pre_tokenizer_splits_digits_like_transformers); this vocabulary has no "
    "multi-digit tokens, so the ids are the same."
)
GEMMA_TOKENIZER = (
    "The checkpoint rebuilt from the GGUF has tokenizer.json (SentencePiece-style BPE with byte fallback) "
    "but no tokenizer.model, so llama.cpp's Gemma 3 converter takes its GPT-2 path: a 'gpt2' vocabulary "
    "with merges, a pre-tokenizer picked by hash, <0xNN> tokens typed NORMAL, no scores and no "
    "add_space_prefix. Ours writes the 'llama' (SentencePiece) vocabulary llama.cpp's converter makes "
    "from a real tokenizer.model, pre 'default', <0xNN> tokens typed BYTE, add_space_prefix false, and "
    "scores of minus each token's merge rank, so llama.cpp merges in tokenizer.json's order; its token "
    "ids equal transformers' (test_tokenizer_round_trip_matches_transformers[gemma])."
)

# The differences accounted for; the first that matches gives the reason.
EXPLAINED: tuple[Expected, ...] = (
    *(Expected("*", f"general.{k}", "theirs", GENERAL) for k in ("basename", "finetune", "size_label")),
    Expected("*", "general.type", "theirs", GENERAL),
    Expected("*", "general.name", "both", GENERAL),
    Expected("*", "*.vocab_size", "ours", VOCAB_SIZE),
    Expected("gemma-3-*", "tokenizer.ggml.*", "*", GEMMA_TOKENIZER),
    Expected("*", "tokenizer.ggml.add_space_prefix", "ours", SPACE_PREFIX),
    Expected("smollm2-*", "llama.attention.[kv]*_length", "theirs", HEAD_DIM),
    Expected("tiny-llama32", "llama.attention.[kv]*_length", "theirs", HEAD_DIM),
    Expected("smollm2-*", "tokenizer.ggml.add_bos_token", "theirs", GRANITE_BOS),
    Expected("tiny-*", "tokenizer.ggml.add_bos_token", "ours", NO_BOS),
    Expected("smollm2-*", "tokenizer.ggml.pre", "both", SMOLLM2_PRE),
)

OURS_CODE = (
    "import sys; from pathlib import Path; from ondevice.converters.hf_to_gguf import convert_directory; "
    "convert_directory(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])"
)

# llama.cpp's converter with a fallback pre-tokenizer name (argv: script, name, the script's arguments):
# its own hash lookup still runs first. gguf-py and conversion/ go first on sys.path, as the script
# itself would put them, before conversion/ is imported to patch.
THEIRS_WITH_PRE_CODE = """
import os, runpy, sys
script, pre = sys.argv[1], sys.argv[2]
sys.argv = [script, *sys.argv[3:]]
root = os.path.dirname(os.path.abspath(script))
sys.path[:0] = [root, root + '/gguf-py']
from conversion.base import TextModel
recognised = TextModel.get_vocab_base_pre
def vocab_base_pre(self, tokenizer):
    try:
        return recognised(self, tokenizer)
    except NotImplementedError:
        return pre
TextModel.get_vocab_base_pre = vocab_base_pre
runpy.run_path(script, run_name='__main__')
"""

# Builds one tiny checkpoint (argv: family, directory) from the repo root, where `tests` imports.
BUILD_TINY_CODE = (
    "import sys; from pathlib import Path; import tests.support.convert as c; "
    "import tests.support.convert_phi3 as p; import tests.support.llama3 as l; "
    "name = 'build_tiny_' + sys.argv[1]; "
    "next(getattr(m, name) for m in (c, p, l) if hasattr(m, name))(Path(sys.argv[2]))"
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


@dataclass(frozen=True)
class Model:
    """A checkpoint to convert, and the pre-tokenizer name llama.cpp falls back on (tiny ones only)."""

    directory: Path
    pre: str | None = None


def default_names() -> list[str]:
    return [*BUNDLED_MODELS, *(f"tiny-{family}" for family in TINY_FAMILIES)]


def bundled_checkpoint(label: str) -> Path:
    root = test_cache_root()
    dirs = sorted(p.parent for p in root.glob(f"{label}-*/config.json"))
    if not dirs:
        raise BenchError(
            f"no cached checkpoint {label}-* under {root}: run the converter tests first "
            "(pytest tests/converters/test_hf_to_gguf.py) or build it with "
            "`python tests/support/checkpoints.py FILE.gguf SHA256 LABEL`"
        )
    return dirs[-1]


def build_tiny(family: str, out: Path) -> Path:
    """The tiny `family` checkpoint the converter tests use, built (seconds) in a child process."""
    print(f"building the tiny {family} checkpoint ...", flush=True)
    cmd = [sys.executable, "-c", BUILD_TINY_CODE, family, str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"could not build the tiny {family} checkpoint: {last}")
    return out


def named_model(name: str, work: Path) -> Model:
    """A default checkpoint by name: a bundled model's label or tiny-FAMILY."""
    if name in BUNDLED_MODELS:
        return Model(bundled_checkpoint(name))
    family = name.removeprefix("tiny-")
    if family in TINY_FAMILIES:
        return Model(build_tiny(family, work / name), TINY_FAMILIES[family])
    raise BenchError(f"{name} is neither a directory nor a default ({', '.join(default_names())})")


def resolve_models(args: list[str], work: Path) -> list[Model]:
    """Checkpoint directories and default names, in order; none: every default."""
    models = []
    for arg in args or default_names():
        path = Path(arg)
        models.append(Model(check_checkpoint(path)) if path.is_dir() else named_model(arg, work))
    return models


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


def theirs_cmd(script: Path, model: Model, out: Path, outtype: str) -> list[str]:
    args = [str(model.directory), "--outtype", outtype, "--outfile", str(out)]
    if model.pre is None:
        return [sys.executable, str(script), *args]
    return [sys.executable, "-c", THEIRS_WITH_PRE_CODE, str(script), model.pre, *args]


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


@dataclass(frozen=True)
class Meta:
    """A metadata value as the GGUF stores it: its type (an array's as [TYPE]) and its Python value."""

    type: str
    value: Any


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's GGUF shape (ne order) and type."""

    shape: tuple[int, ...]
    type: str


@dataclass(frozen=True)
class Difference:
    """One metadata key or tensor the two GGUFs disagree on: what each holds ("-": absent)."""

    item: str
    ours: str
    theirs: str


def read_metadata(reader: gguf.GGUFReader) -> dict[str, Meta]:
    """Every key/value pair but the header's (GGUF.version and the counts, which follow from the rest)."""
    found = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        names = [t.name for t in field.types]
        kind = f"[{names[-1] if len(names) > 1 else ''}]" if names[0] == "ARRAY" else names[0]
        found[key] = Meta(kind, field.contents())
    return found


def read_tensor_infos(reader: gguf.GGUFReader) -> dict[str, TensorInfo]:
    return {t.name: TensorInfo(tuple(int(n) for n in t.shape), t.tensor_type.name) for t in reader.tensors}


def _same(a: Any, b: Any) -> bool:
    """Equal, floats within FLOAT_REL_TOL (both converters round the same config value to float32, but
    may reach it by different arithmetic)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and math.isclose(a, b, rel_tol=FLOAT_REL_TOL, abs_tol=1e-30)
        )
    return a == b


def _short(value: Any, width: int = ELEMENT_WIDTH) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _string_cells(a: str, b: str) -> tuple[str, str]:
    """Two long strings, shown from a little before where they first differ."""
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, at - 8)

    def cell(text: str) -> str:
        return f"len {len(text)}, from @{start}: {_short(text[start:], CELL_WIDTH - 20)}"

    return cell(a), cell(b)


def _array_cells(a: list[Any], b: list[Any]) -> tuple[str, str]:
    """Two arrays' lengths and their first few differing elements (by index), and how many differ."""
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if not _same(x, y)]
    shown = differing[:SHOWN_ELEMENTS]
    if len(a) != len(b):
        shown.append(min(len(a), len(b)))  # the first element only one side has
    count = f"; {len(differing)} of {min(len(a), len(b))} differ" if differing else ""
    cells = []
    for values in (a, b):
        elements = ", ".join(f"[{i}] {_short(values[i])}" if i < len(values) else f"[{i}] -" for i in shown)
        cells.append(f"len {len(values)}{count}: {elements}")
    return cells[0], cells[1]


def _value_cell(meta: Meta | None) -> str:
    if meta is None:
        return "-"
    if isinstance(meta.value, list):
        head = ", ".join(_short(v) for v in meta.value[:SHOWN_ELEMENTS])
        more = ", …" if len(meta.value) > SHOWN_ELEMENTS else ""
        return f"{meta.type} len {len(meta.value)}: {head}{more}"
    return f"{meta.type} {_short(meta.value, CELL_WIDTH)}"


def metadata_differences(ours: dict[str, Meta], theirs: dict[str, Meta]) -> list[Difference]:
    """Every key that one side lacks, or whose type or value differs (arrays element by element)."""
    found = []
    for key in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(key), theirs.get(key)
        if a is None or b is None or a.type != b.type:
            found.append(Difference(key, _value_cell(a), _value_cell(b)))
        elif isinstance(a.value, list):
            if len(a.value) != len(b.value) or not all(map(_same, a.value, b.value)):
                found.append(Difference(key, *_array_cells(a.value, b.value)))
        elif not _same(a.value, b.value):
            long = isinstance(a.value, str) and max(len(a.value), len(b.value)) > CELL_WIDTH
            cells = _string_cells(a.value, b.value) if long else (_value_cell(a), _value_cell(b))
            found.append(Difference(key, *cells))
    return found


def tensor_differences(ours: dict[str, TensorInfo], theirs: dict[str, TensorInfo]) -> list[Difference]:
    """Every tensor one side lacks, or whose shape or type differs."""

    def cell(info: TensorInfo | None) -> str:
        return "-" if info is None else f"{info.type} {list(info.shape)}"

    return [
        Difference(name, cell(ours.get(name)), cell(theirs.get(name)))
        for name in sorted(ours.keys() | theirs.keys())
        if ours.get(name) != theirs.get(name)
    ]


def explanation(model: str, difference: Difference) -> str | None:
    """Why `difference` is expected for the checkpoint named `model`, if it is accounted for."""
    present = "ours" if difference.theirs == "-" else "theirs" if difference.ours == "-" else "both"
    for expected in EXPLAINED:
        if (
            fnmatch.fnmatchcase(model, expected.models)
            and fnmatch.fnmatchcase(difference.item, expected.items)
            and fnmatch.fnmatchcase(present, expected.present)
        ):
            return expected.why
    return None


def data_summary(a: gguf.GGUFReader, b: gguf.GGUFReader) -> str:
    """How the values of the tensors both files have with the same shape and type compare."""
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    comparable = [
        n
        for n in sorted(ta.keys() & tb.keys())
        if ta[n].tensor_type == tb[n].tensor_type and list(ta[n].shape) == list(tb[n].shape)
    ]
    max_diff, worst, identical = 0.0, "", 0
    for name in comparable:
        x, y = ta[name], tb[name]
        if _same_bytes(x.data, y.data):
            identical += 1
            continue
        diff = max(float(np.max(np.abs(cx - cy))) for cx, cy in zip(_values(x), _values(y), strict=True))
        if diff >= max_diff:
            max_diff, worst = diff, name
    line = f"tensor data: {identical}/{len(comparable)} comparable tensors byte-identical"
    return line + (f", max |diff| {max_diff:.3g} (in {worst})" if worst else "")


def print_differences(model: str, differences: list[Difference]) -> int:
    """Print the differences as a table (item, ours, theirs, note) with the notes' reasons below it;
    return how many are not explained."""
    if not differences:
        print("  metadata and tensors: no differences")
        return 0
    notes: list[str] = []
    rows = []
    for d in differences:
        why = explanation(model, d)
        if why is None:
            mark = "UNEXPLAINED"
        else:
            if why not in notes:
                notes.append(why)
            mark = f"[{notes.index(why) + 1}]"
        rows.append((d.item, d.ours, d.theirs, mark))
    header = ("key / tensor", "ours", "theirs (llama.cpp)", "why")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    for number, why in enumerate(notes, 1):
        print(textwrap.fill(why, 108, initial_indent=f"  [{number}] ", subsequent_indent="      "))
    unexplained = sum(r[3] == "UNEXPLAINED" for r in rows)
    print(f"  {len(rows)} differences, {unexplained} unexplained")
    return unexplained


def compare(model: str, ours: Path, theirs: Path) -> int:
    """Print how the two GGUFs converted from checkpoint `model` differ; return how many differences
    are not explained."""
    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)
    print(f"  {data_summary(a, b)}")
    differences = metadata_differences(read_metadata(a), read_metadata(b))
    differences += tensor_differences(read_tensor_infos(a), read_tensor_infos(b))
    return print_differences(model, differences)


@dataclass(frozen=True)
class Result:
    """One model's runs of both converters and how many output differences are not explained."""

    runs: dict[str, list[Run]]
    unexplained: int


def bench_model(model: Model, script: Path, outtype: str, rounds: int, poll_s: float) -> Result:
    checkpoint = model.directory
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
                    else theirs_cmd(script, model, out, outtype)
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
        unexplained = compare(checkpoint.name, kept["ours"], kept["theirs"])
    return Result(runs, unexplained)


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
    parser.add_argument(
        "checkpoints",
        nargs="*",
        help=f"HF checkpoint directories or default names ({', '.join(default_names())}); none: all defaults",
    )
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
        src = args.llama_cpp_src if args.llama_cpp_src else fetch_llama_cpp(args.cache_dir)
        script = check_llama_cpp(src)
        print(f"llama.cpp converter: {script}")
        with tempfile.TemporaryDirectory(prefix="ondevice-convert-bench-tiny-") as tiny:
            models = resolve_models(args.checkpoints, Path(tiny))
            results = {
                m.directory.name: bench_model(m, script, args.outtype, args.rounds, args.poll) for m in models
            }
    except (BenchError, OSError) as exc:
        sys.exit(f"error: {exc}")
    verdicts = {name: table(name, result.runs) for name, result in results.items()}
    print(f"\ngoal: ours/theirs <= {GOAL} for both wall time and peak RSS; no unexplained differences")
    for name, (wall, rss) in verdicts.items():
        met = "met" if wall <= GOAL and rss <= GOAL else "NOT met"
        unexplained = results[name].unexplained
        print(
            f"  {name}: wall {wall:.3f}, peak RSS {rss:.3f} -> {met}; {unexplained} unexplained differences"
        )


if __name__ == "__main__":
    main()
