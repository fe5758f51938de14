"""Hugging Face safetensors checkpoints to GGUF, one module per architecture family.

`convert(source, outtype)` is the library entry point; `FAMILIES` maps a config's `model_type` to the
family that reads it.
"""

from __future__ import annotations

from .base import ConvertError, Family, OutType, write_gguf
from .convert import FAMILIES, ConvertResult, convert, convert_directory, family_for

__all__ = [
    "FAMILIES",
    "ConvertError",
    "ConvertResult",
    "Family",
    "OutType",
    "convert",
    "convert_directory",
    "family_for",
    "write_gguf",
]
