"""One file through llama.cpp's quantizer (`llama_model_quantize`), in a spawned child process.

llama.cpp can abort() on input it dislikes, so each level is quantized in a child: a crash there is an
error message here. The child gets plain data (the matrix as per-column means, the overrides as type
numbers) and builds llama.cpp's C arrays itself, keeping their buffers alive for the call.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ondevice.manifest import QuantOverrides, imatrix_header
from ondevice.runtime.lifeline import exit_with_parent, log_file, log_lines, stop_child

from .quant_levels import Level
from .quantize_options import TENSOR_TYPES, MatrixInput, QuantizeError

__all__ = ["quantize_file"]

_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class _Job:
    """What the child needs, as picklable plain data."""

    src: str
    dst: str
    ftype: int
    allow_requantize: bool
    threads: int
    log: str
    imatrix: dict[str, np.ndarray] = field(default_factory=dict)  # GGUF weight name -> means
    metadata: dict[str, str | int] = field(default_factory=dict)  # written into the output GGUF
    tensor_types: tuple[tuple[str, int], ...] = ()  # (regex, ggml type)
    output_tensor_type: int | None = None
    token_embedding_type: int | None = None


def _kv_overrides(llama_cpp, metadata: dict[str, str | int]):
    """llama.cpp's array of metadata overrides, ended by an empty key."""
    overrides = (llama_cpp.llama_model_kv_override * (len(metadata) + 1))()
    for slot, (key, value) in zip(overrides, metadata.items(), strict=False):
        slot.key = key.encode()
        if isinstance(value, int):
            slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            slot.value.val_i64 = value
        else:
            slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            slot.value.val_str = value.encode()[:127]
    return overrides


def _child_quantize(job: _Job) -> None:
    """Runs in a spawned process: llama.cpp's log goes to `job.log`, the exit code says how it went."""
    exit_with_parent()  # a killed ondevice must not leave a quantizer writing on
    log = open(job.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 2)  # llama.cpp's own fprintf(stderr) as well as its log callback
    import sys

    sys.stderr = log
    import llama_cpp
    import llama_cpp._logger as llama_logger

    llama_logger.set_verbose(True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = job.ftype
    params.allow_requantize = job.allow_requantize
    params.nthread = job.threads
    keep: list[object] = []  # every buffer llama.cpp reads during the call stays referenced here
    if job.imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(job.imatrix) + 1))()  # zeroed: the NULL end
        for slot, (name, values) in zip(entries, job.imatrix.items(), strict=False):
            means = np.ascontiguousarray(values, dtype=np.float32)
            name_bytes = name.encode()
            keep += [means, name_bytes]
            slot.name = name_bytes
            slot.data = means.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            slot.size = means.size
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    if job.metadata:
        overrides = _kv_overrides(llama_cpp, job.metadata)
        keep.append(overrides)
        params.kv_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_kv_override))
    if job.tensor_types:
        patterns = (llama_cpp.llama_model_tensor_override * (len(job.tensor_types) + 1))()
        for slot, (pattern, ggml_type) in zip(patterns, job.tensor_types, strict=False):
            pattern_bytes = pattern.encode()
            keep.append(pattern_bytes)
            slot.pattern, slot.type = pattern_bytes, ggml_type
        patterns[-1].type = llama_cpp.GGML_TYPE_COUNT  # the end: a NULL pattern, as llama-quantize ends it
        keep.append(patterns)
        params.tt_overrides = ctypes.cast(patterns, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    if job.output_tensor_type is not None:
        params.output_tensor_type = job.output_tensor_type
    if job.token_embedding_type is not None:
        params.token_embedding_type = job.token_embedding_type
    status = llama_cpp.llama_model_quantize(job.src.encode(), job.dst.encode(), ctypes.byref(params))
    log.flush()
    os._exit(0 if status == 0 else 3)


def _tail(log: Path, lines: int = 3) -> str:
    kept = [line for line in log_lines(log) if not set(line) <= {"="}]
    return " | ".join(kept[-lines:])


_FALLBACK = re.compile(r"(\d+) of \d+ tensor\(s\) required fallback quantization")


def _ggml(name: str | None) -> int | None:
    return None if name is None else int(TENSOR_TYPES[name])


def _job(
    src: Path,
    dst: Path,
    level: Level,
    allow_requantize: bool,
    threads: int | None,
    log: Path,
    matrix: MatrixInput | None,
    overrides: QuantOverrides | None,
) -> _Job:
    return _Job(
        str(src),
        str(dst),
        int(level.ftype),
        allow_requantize,
        threads or os.cpu_count() or 1,
        str(log),
        imatrix=matrix.matrix.means() if matrix is not None else {},
        metadata=imatrix_header(matrix.record) if matrix is not None else {},
        tensor_types=tuple((t.pattern, int(TENSOR_TYPES[t.type])) for t in overrides.tensor_types)
        if overrides
        else (),
        output_tensor_type=_ggml(overrides.output_tensor_type) if overrides else None,
        token_embedding_type=_ggml(overrides.token_embedding_type) if overrides else None,
    )


def quantize_file(
    src: Path,
    dst: Path,
    level: Level,
    *,
    allow_requantize: bool = False,
    threads: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    matrix: MatrixInput | None = None,
    overrides: QuantOverrides | None = None,
) -> int:
    """Quantize `src` into `dst` in a child process; return how many tensors fell back to another type.

    `matrix` and `overrides` are passed as they are: the caller checks them against the source first."""
    log = log_file("quantize")
    job = _job(src, dst, level, allow_requantize, threads, log, matrix, overrides)
    child = mp.get_context("spawn").Process(
        target=_child_quantize, args=(job,), name=f"ondevice-quantize:{level.name}", daemon=True
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
        stop_child(child)  # when interrupted (Ctrl-C): the partial output is removed by our caller
        log.unlink(missing_ok=True)
