"""What `models info` and `models list` say about a model, as plain data."""

from __future__ import annotations

import dataclasses
from typing import Any

from .refs import ResolvedModel
from .store import StoreEntry


def model_info(model: ResolvedModel) -> dict[str, Any]:
    """Facts read from the GGUF header and the store manifest; loads nothing into llama.cpp."""
    summary = model.summary
    info: dict[str, Any] = {
        "ref": model.manifest.ref if model.manifest is not None else model.ref,
        "name": model.display_name,
        "path": str(model.path),
        "kind": model.kind.value,
        "kind_reason": model.kind_reason,
        "architecture": summary.architecture,
        "model_name": summary.name,
        "parameter_count": summary.parameter_count,
        "quant": model.quant,
        "bits_per_weight": round(summary.bits_per_weight, 3),
        "file_size_bytes": summary.file_size,
        "context_length": summary.context_length,
        "has_chat_template": bool(summary.chat_template),
        "tensor_count": len(summary.tensors),
        "gguf_version": summary.version,
    }
    if model.manifest is not None:
        info.update(
            source=model.manifest.source,
            revision=model.manifest.revision,
            sha256=model.manifest.sha256,
            added=model.manifest.created,
        )
        if model.manifest.imatrix is not None:
            info["imatrix"] = dataclasses.asdict(model.manifest.imatrix)
        if model.manifest.overrides is not None:
            info["overrides"] = dataclasses.asdict(model.manifest.overrides)
    return info


def entry_row(entry: StoreEntry) -> dict[str, Any]:
    """One line of `models list`."""
    m = entry.manifest
    return {
        "ref": m.ref,
        "kind": m.kind.value,
        "architecture": m.architecture,
        "parameter_count": m.parameter_count,
        "quant": m.quant,
        "bits_per_weight": m.bits_per_weight,
        "file_size_bytes": m.size_bytes,
        "source": m.source,
        "path": str(entry.path),
    }
