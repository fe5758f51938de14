"""A quantization ladder through llama.cpp's own quantizer (`llama_model_quantize`).

Each level is quantized in a spawned child (quantize_child): it writes to the store's partial path and
the store publishes the file (validated, with a manifest) only when the child exits cleanly. An
importance matrix and per-tensor types (quantize_options) are checked against the source before any
child starts; a file made with them is named LEVEL-imat / LEVEL-custom (ondevice.quant_names), so it sits
beside the plain file of its level.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from ondevice.gguf_summary import GGUFSummary
from ondevice.manifest import Manifest, QuantOverrides, check_name, describe, sha256_file
from ondevice.progress import Progress, ProgressFn, Unit
from ondevice.refs import ResolvedModel, resolve
from ondevice.store import Store

from .quant_levels import LEVELS, Level, matrix_needed, parse_levels
from .quantize_child import quantize_file
from .quantize_options import MatrixInput, QuantizeError, check_matrix, check_overrides, resolve_matrix

__all__ = [
    "LEVELS",
    "Level",
    "QuantizeError",
    "QuantizeResult",
    "is_quantized",
    "parse_levels",
    "quantize",
    "quantize_file",
]

DEFAULT_LADDER = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k")
_UNQUANTIZED = {
    gguf.GGMLQuantizationType.F32,
    gguf.GGMLQuantizationType.F16,
    gguf.GGMLQuantizationType.BF16,
    gguf.GGMLQuantizationType.F64,
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
    quant: str = ""  # the store's name for it: the level, tagged -imat / -custom

    def as_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "path": str(self.path),
            "level": self.level,
            "quant": self.quant or self.level,
            "size_bytes": self.size_bytes,
            "bits_per_weight": self.bits_per_weight,
            "seconds": round(self.seconds, 2),
            "requantized": self.requantized,
            "fallback_tensors": self.fallback_tensors,
            "notes": self.notes,
        }


def is_quantized(summary: GGUFSummary) -> bool:
    """Whether any weight matrix is stored in a quantized type (so requantizing would compound loss)."""
    return any(len(t.shape) >= 2 and t.ggml_type not in _UNQUANTIZED for t in summary.tensors)


# -- the ladder --------------------------------------------------------------------------------


# A quantization tag at the end of a file name: "model.Q4_K_M", "model-f16", "Q4_K_M-imat", or the
# whole name ("F16").
_QUANT_TAG = re.compile(r"(^|[._-])(I?Q\d[A-Z0-9_]*|F16|F32|BF16)(-imat)?(-custom)?$", re.IGNORECASE)


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
    imatrix: str | Path | MatrixInput | None = None,
    overrides: QuantOverrides | None = None,
) -> list[QuantizeResult]:
    """Quantize a model (any reference) to each level, publishing every file into the store with a manifest.

    `progress` hears the bytes each level has written, of an estimate from its nominal bits per weight.
    `origin` is the source the manifests record (default quantize:SOURCE; a conversion says convert:REF).
    `imatrix` is an importance matrix file (or `auto`, or one loaded); `overrides` the tensor types
    chosen by hand (quantize_options.make_overrides). Both are checked against the source, and every
    level that needs a matrix has one, before anything is written; their files are named LEVEL-imat,
    LEVEL-custom or LEVEL-imat-custom, and their manifests record the matrix and the overrides.

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
    overrides = None if overrides is None or overrides.empty else overrides
    needed = matrix_needed(wanted)
    if needed and imatrix is None:
        raise QuantizeError(
            f"{needed} (llama.cpp refuses to write one without it): pass --imatrix FILE or --imatrix auto"
        )
    if overrides is not None:
        check_overrides(overrides, model.summary, model.display_name, with_matrix=imatrix is not None)
    # `auto` computes a matrix: not for levels whose quantizer would ignore it.
    wanted_matrix = imatrix if any(level.uses_matrix for level in wanted) else None
    matrix = resolve_matrix(wanted_matrix, model, store, progress)
    if matrix is not None:
        check_matrix(matrix, model.summary, model.display_name)

    def quant_of(level: Level) -> str:
        return level.store_quant(with_matrix=matrix is not None, custom=overrides is not None)

    for level in wanted:
        if (
            model.manifest is not None
            and target == model.manifest.name
            and quant_of(level) == model.manifest.quant
        ):
            raise QuantizeError(
                f"{source_label} is the source; it cannot be overwritten by its own {quant_of(level)}"
            )
    source_digest = model.manifest.sha256 if model.manifest is not None else sha256_file(model.path)
    declared = model.manifest.kind if model.manifest is not None else model.kind
    params = model.summary.parameter_count

    results: list[QuantizeResult] = []
    for index, level in enumerate(wanted):
        quant = quant_of(level)
        level_matrix = matrix if level.uses_matrix else None
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
            level_matrix: MatrixInput | None = level_matrix,
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
                matrix=level_matrix,
                overrides=overrides,
            )
            done["sha256"] = sha256_file(partial)

        def manifest_for(
            summary: GGUFSummary,
            level: Level = level,
            quant: str = quant,
            started: float = started,
            done: dict[str, Any] = done,
            level_matrix: MatrixInput | None = level_matrix,
        ) -> Manifest:
            manifest = describe(
                summary,
                name=target,
                quant=quant,
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
            manifest.imatrix = level_matrix.record if level_matrix is not None else None
            manifest.overrides = overrides
            return manifest

        entry = store.add(target, quant, write, int(estimated * 1.1), manifest_for)
        fallbacks = done["fallbacks"]
        notes = []
        if requantizing:
            notes.append(f"requantized from {source_quant}: quality is capped by the source's")
        if imatrix is not None and not level.uses_matrix:
            notes.append(f"{level.name} does not use an importance matrix: written as the plain {level.name}")
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
                quant=quant,
            )
        )
    return results
