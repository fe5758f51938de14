"""A quantization ladder through llama.cpp's own quantizer (`llama_model_quantize`).

llama.cpp can abort() on input it dislikes, so each level is quantized in a spawned child process:
a crash there is an error message here. The child writes to the store's partial path and the
parent publishes the file (validated, with a manifest) only when the child exits cleanly.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from ondevice.errors import OndeviceError
from ondevice.gguf_summary import GGUFSummary
from ondevice.manifest import Manifest, check_name, describe, sha256_file
from ondevice.progress import Progress, ProgressFn, Unit
from ondevice.refs import ResolvedModel, resolve
from ondevice.runtime.lifeline import exit_with_parent, log_file
from ondevice.store import Store

__all__ = [
    "LEVELS",
    "QuantizeError",
    "QuantizeResult",
    "is_quantized",
    "parse_levels",
    "quantize",
    "quantize_file",
]

DEFAULT_LADDER = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k")
_POLL_SECONDS = 0.2
_UNQUANTIZED = {
    gguf.GGMLQuantizationType.F32,
    gguf.GGMLQuantizationType.F16,
    gguf.GGMLQuantizationType.BF16,
    gguf.GGMLQuantizationType.F64,
}


class QuantizeError(OndeviceError):
    """A quantization cannot be done as asked, or llama.cpp's quantizer failed."""


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: llama.cpp's file type and its nominal bits per weight (for estimates)."""

    name: str  # the store's quant name, e.g. "Q4_K_M"
    ftype: gguf.LlamaFileType
    nominal_bpw: float


def _level(name: str, nominal_bpw: float) -> Level:
    return Level(name, gguf.LlamaFileType[f"MOSTLY_{name}"], nominal_bpw)


LEVELS: dict[str, Level] = {
    level.name.lower(): level
    for level in (
        Level("F32", gguf.LlamaFileType.ALL_F32, 32.0),
        _level("F16", 16.0),
        _level("BF16", 16.0),
        _level("Q8_0", 8.5),
        _level("Q6_K", 6.56),
        _level("Q5_K_M", 5.7),
        _level("Q5_K_S", 5.5),
        _level("Q5_0", 5.5),
        _level("Q5_1", 6.0),
        _level("Q4_K_M", 4.9),
        _level("Q4_K_S", 4.6),
        _level("Q4_0", 4.5),
        _level("Q4_1", 5.0),
        _level("Q3_K_L", 4.3),
        _level("Q3_K_M", 3.9),
        _level("Q3_K_S", 3.5),
        _level("Q2_K", 3.35),
    )
}


@dataclass
class QuantizeResult:
    """One file the ladder wrote."""

    ref: str
    path: Path
    level: str
    size_bytes: int
    bits_per_weight: float
    seconds: float
    requantized: bool
    fallback_tensors: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "path": str(self.path),
            "level": self.level,
            "size_bytes": self.size_bytes,
            "bits_per_weight": self.bits_per_weight,
            "seconds": round(self.seconds, 2),
            "requantized": self.requantized,
            "fallback_tensors": self.fallback_tensors,
            "notes": self.notes,
        }


def parse_levels(text: str | list[str] | tuple[str, ...]) -> list[Level]:
    """Levels from "q8_0,q4_k_m" (any case, no repeats); an unknown one lists the known ones."""
    names = text.split(",") if isinstance(text, str) else list(text)
    levels: list[Level] = []
    for raw in names:
        key = raw.strip().lower()
        if not key:
            continue
        if key not in LEVELS:
            raise QuantizeError(f"unknown quantization level {raw.strip()!r}; known: {', '.join(LEVELS)}")
        if LEVELS[key] not in levels:
            levels.append(LEVELS[key])
    if not levels:
        raise QuantizeError("no quantization levels given")
    return levels


def is_quantized(summary: GGUFSummary) -> bool:
    """Whether any weight matrix is stored in a quantized type (so requantizing would compound loss)."""
    return any(len(t.shape) >= 2 and t.ggml_type not in _UNQUANTIZED for t in summary.tensors)


# -- the child process -------------------------------------------------------------------------


def _child_quantize(src: str, dst: str, ftype: int, allow_requantize: bool, threads: int, log: str) -> None:
    """Runs in a spawned process: llama.cpp's log goes to `log`, the exit code says how it went."""
    exit_with_parent()  # a killed ondevice must not leave a quantizer writing on
    log_file = open(log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    os.dup2(log_file.fileno(), 2)  # llama.cpp's own fprintf(stderr) as well as its log callback
    import sys

    sys.stderr = log_file
    import llama_cpp
    import llama_cpp._logger as llama_logger

    llama_logger.set_verbose(True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = allow_requantize
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    log_file.flush()
    os._exit(0 if status == 0 else 3)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


_FALLBACK = re.compile(r"(\d+) of \d+ tensor\(s\) required fallback quantization")


def quantize_file(
    src: Path,
    dst: Path,
    level: Level,
    *,
    allow_requantize: bool = False,
    threads: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Quantize `src` into `dst` in a child process; return how many tensors fell back to another type."""
    log = log_file("quantize")
    log_name = str(log)
    ctx = mp.get_context("spawn")
    child = ctx.Process(
        target=_child_quantize,
        args=(
            str(src),
            str(dst),
            int(level.ftype),
            allow_requantize,
            threads or os.cpu_count() or 1,
            log_name,
        ),
        name=f"ondevice-quantize:{level.name}",
        daemon=True,
    )
    try:
        child.start()
        while child.is_alive():
            child.join(_POLL_SECONDS)
            if on_bytes is not None:
                with contextlib.suppress(OSError):
                    on_bytes(dst.stat().st_size)
        if child.exitcode != 0:
            how = f"signal {-child.exitcode}" if (child.exitcode or 0) < 0 else f"exit {child.exitcode}"
            detail = _tail(log)
            raise QuantizeError(
                f"llama.cpp's quantizer failed on {src.name} -> {level.name} ({how})"
                + (f": {detail}" if detail else "")
            )
        found = _FALLBACK.search(log.read_text(encoding="utf-8", errors="replace"))
        return int(found.group(1)) if found else 0
    finally:
        if child.is_alive():  # interrupted (Ctrl-C): the partial output is removed by our caller
            child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join()
        log.unlink(missing_ok=True)


# -- the ladder --------------------------------------------------------------------------------


# A quantization tag at the end of a file name: "model.Q4_K_M", "model-f16", or the whole name ("F16").
_QUANT_TAG = re.compile(r"(^|[._-])(I?Q\d[A-Z0-9_]*|F16|F32|BF16)$", re.IGNORECASE)


def _source_name(model: ResolvedModel) -> str:
    """The store name outputs get: the source's own, else its file name less a quantization tag (a
    file named just F16.gguf, as in a store directory, is named after its directory)."""
    if model.manifest is not None:
        return model.manifest.name
    stem = _QUANT_TAG.sub("", model.path.stem) or model.path.parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "model"


def quantize(
    source: str | ResolvedModel,
    levels: str | list[str] | tuple[str, ...] = DEFAULT_LADDER,
    *,
    allow_requantize: bool = False,
    name: str | None = None,
    store: Store | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    origin: str | None = None,
) -> list[QuantizeResult]:
    """Quantize a model (any reference) to each level, publishing every file into the store with a manifest.

    `progress` hears the bytes each level has written, of an estimate from its nominal bits per weight.
    `origin` is the source the manifests record (default quantize:SOURCE; a conversion says convert:REF).

    A source that is already quantized is refused unless `allow_requantize`; then each result notes that
    its quality is capped by the source's.
    """
    store = store or Store()
    model = source if isinstance(source, ResolvedModel) else resolve(source, store, progress)
    wanted = parse_levels(levels)
    target = check_name(name or _source_name(model))
    source_quant = model.quant
    requantizing = is_quantized(model.summary)
    if requantizing and not allow_requantize:
        raise QuantizeError(
            f"{model.ref} is already quantized ({source_quant}); requantizing compounds the loss: "
            "convert from F16/F32 first, or pass --allow-requantize"
        )
    source_label = model.manifest.ref if model.manifest is not None else str(model.path)
    for level in wanted:
        if (
            model.manifest is not None
            and target == model.manifest.name
            and level.name == model.manifest.quant
        ):
            raise QuantizeError(
                f"{source_label} is the source; it cannot be overwritten by its own {level.name}"
            )
    source_digest = model.manifest.sha256 if model.manifest is not None else sha256_file(model.path)
    declared = model.manifest.kind if model.manifest is not None else model.kind
    params = model.summary.parameter_count

    results: list[QuantizeResult] = []
    for index, level in enumerate(wanted):
        estimated = int(params * level.nominal_bpw / 8) + model.summary.data_offset
        started = time.monotonic()
        # Filled by write() in this iteration, read by manifest_for() right after it.
        done: dict[str, Any] = {"fallbacks": 0, "sha256": ""}

        def write(
            partial: Path,
            level: Level = level,
            index: int = index,
            estimated: int = estimated,
            done: dict[str, Any] = done,
        ) -> None:
            def on_bytes(written: int) -> None:
                if progress is not None:
                    step = f"{level.name} ({index + 1}/{len(wanted)})"
                    total = max(estimated, written)  # a nominal estimate: a larger file stretches it
                    progress(Progress(f"quantize {model.display_name}", step, written, total, Unit.BYTES))

            done["fallbacks"] = quantize_file(
                model.path,
                partial,
                level,
                allow_requantize=allow_requantize,
                threads=threads,
                on_bytes=on_bytes,
            )
            done["sha256"] = sha256_file(partial)

        def manifest_for(
            summary: GGUFSummary, level: Level = level, started: float = started, done: dict[str, Any] = done
        ) -> Manifest:
            manifest = describe(
                summary,
                name=target,
                quant=level.name,
                source=origin or f"quantize:{source_label}",
                sha256=done["sha256"],
                declared_kind=declared,
                declared_by=f"its source {source_label}",
                revision=model.manifest.revision if model.manifest is not None else None,
            )
            manifest.extra = {
                "level": level.name.lower(),
                "source_quant": source_quant,
                "source_sha256": source_digest,
                "seconds": round(time.monotonic() - started, 2),
                "requantized": requantizing,
                "fallback_tensors": done["fallbacks"],
            }
            return manifest

        entry = store.add(target, level.name, write, int(estimated * 1.1), manifest_for)
        fallbacks = done["fallbacks"]
        notes = []
        if requantizing:
            notes.append(f"requantized from {source_quant}: quality is capped by the source's")
        if fallbacks:
            notes.append(f"{fallbacks} tensors fell back to another type (rows not divisible by the block)")
        results.append(
            QuantizeResult(
                ref=entry.manifest.ref,
                path=entry.path,
                level=level.name,
                size_bytes=entry.manifest.size_bytes,
                bits_per_weight=entry.manifest.bits_per_weight,
                seconds=entry.manifest.extra["seconds"],
                requantized=requantizing,
                fallback_tensors=fallbacks,
                notes=notes,
            )
        )
    return results
