"""What a GGUF file holds, as `read_gguf` reports it: metadata, tensor entries and the figures derived
from them (architecture, parameter count, bits per weight, quantization name).

Plain frozen data: the reading and validating is `ondevice.gguf_file`'s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

__all__ = ["ARCHITECTURE_KEY", "ArrayInfo", "GGUFSummary", "TensorInfo"]

ARCHITECTURE_KEY = gguf.Keys.General.ARCHITECTURE


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """Stands in for a metadata array with more than 64 elements (which is never materialised)."""

    element_type: str  # a gguf.GGUFValueType name, e.g. "STRING"
    length: int


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's header entry, with its data located in the file."""

    name: str
    shape: tuple[int, ...]  # as stored in GGUF: ne0 (the row length) first
    ggml_type: int  # a gguf.GGMLQuantizationType value
    offset: int  # absolute byte offset of the tensor data in the file
    n_bytes: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def type_name(self) -> str:
        try:
            return gguf.GGMLQuantizationType(self.ggml_type).name
        except ValueError:
            return f"type {self.ggml_type}"


@dataclass(frozen=True)
class GGUFSummary:
    """What a validated GGUF file holds, minus the tensor data and long arrays."""

    path: Path
    version: int
    file_size: int
    alignment: int
    data_offset: int  # start of the tensor data section
    metadata: dict[str, Any]  # str | int | float | bool | list (<= 64 elements) | ArrayInfo
    tensors: tuple[TensorInfo, ...]

    @property
    def architecture(self) -> str | None:
        return _typed(self.metadata.get(ARCHITECTURE_KEY), str)

    @property
    def name(self) -> str | None:
        return _typed(self.metadata.get(gguf.Keys.General.NAME), str)

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        params = self.parameter_count
        return self.tensor_bytes * 8 / params if params else 0.0

    @property
    def file_type_name(self) -> str | None:
        """The declared quantization ("Q4_K_M"), else the dominant type of the weight matrices by bytes."""
        declared = _typed(self.metadata.get(gguf.Keys.General.FILE_TYPE), int)
        if declared is not None and declared != gguf.LlamaFileType.GUESSED:
            try:
                name = gguf.LlamaFileType(declared).name
            except ValueError:
                pass
            else:
                return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        # 1-D tensors (norms, biases) stay F32 in every quantization, so they say nothing.
        matrices = [t for t in self.tensors if len(t.shape) >= 2] or list(self.tensors)
        bytes_by_type: Counter[str] = Counter()
        for tensor in matrices:
            bytes_by_type[tensor.type_name] += tensor.n_bytes
        return bytes_by_type.most_common(1)[0][0] if bytes_by_type else None

    @property
    def context_length(self) -> int | None:
        return _typed(self.arch_value("context_length"), int)

    @property
    def chat_template(self) -> str | None:
        return _typed(self.metadata.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE), str)

    def arch_value(self, key: str, default: Any = None) -> Any:
        """The architecture-scoped value ``{architecture}.{key}``, e.g. ``llama.block_count``."""
        arch = self.architecture
        if arch is None:
            return default
        return self.metadata.get(f"{arch}.{key}", default)


def _typed(value: Any, kind: type) -> Any:
    # bool is an int subclass; a BOOL value is never a count or a length.
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    return None
