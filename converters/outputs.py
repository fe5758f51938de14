"""What a conversion produces: the output types a conversion can write, and its result record.

Shared by the checkpoint converter (hf_to_gguf) and the GGUF rewriter (dequantize), so neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import gguf

from ondevice.errors import OndeviceError


class ConvertError(OndeviceError):
    """A checkpoint cannot be converted as asked."""


class OutType(str, Enum):
    """The GGUF weight types a conversion can write."""

    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    Q8_0 = "q8_0"

    @property
    def ggml_type(self) -> gguf.GGMLQuantizationType:
        return gguf.GGMLQuantizationType[self.name]

    @property
    def file_type(self) -> gguf.LlamaFileType:
        return (
            gguf.LlamaFileType.ALL_F32 if self is OutType.F32 else gguf.LlamaFileType[f"MOSTLY_{self.name}"]
        )

    @classmethod
    def parse(cls, text: str) -> OutType:
        try:
            return cls(text.lower())
        except ValueError:
            raise ConvertError(
                f"unknown output type {text!r}; choose one of {', '.join(t.value for t in cls)}"
            ) from None


@dataclass
class ConvertResult:
    """One GGUF a conversion wrote."""

    ref: str
    path: Path
    outtype: str
    architecture: str
    size_bytes: int
    bits_per_weight: float
    seconds: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "path": str(self.path),
            "outtype": self.outtype,
            "architecture": self.architecture,
            "size_bytes": self.size_bytes,
            "bits_per_weight": self.bits_per_weight,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
        }
