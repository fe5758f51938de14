"""The levels llama.cpp's quantizer makes (its file types), with their nominal bits per weight, and
which of them need an importance matrix."""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from ondevice.quant_names import LEVEL_NAMES, quant_name

from .gguf_levels import LEVEL_BITS
from .quantize_options import QuantizeError

__all__ = ["LEVELS", "Level", "matrix_needed", "parse_levels"]


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: llama.cpp's file type and its nominal bits per weight (for estimates)."""

    name: str  # the level's name, e.g. "Q4_K_M"
    ftype: gguf.LlamaFileType
    nominal_bpw: float
    needs_matrix: bool = False  # llama.cpp refuses to write it without an importance matrix

    @property
    def uses_matrix(self) -> bool:
        """Whether an importance matrix changes what is written: not for float types, and Q8_0's
        quantizer ignores it (quantize_q8_0 in ggml-quants.c)."""
        return self.name not in ("F32", "F16", "BF16", "Q8_0")

    def store_quant(self, *, with_matrix: bool, custom: bool = False) -> str:
        """The store name of this level's file: tagged -imat only where the matrix changed it."""
        return quant_name(self.name, imatrix=with_matrix and self.uses_matrix, custom=custom)


def matrix_needed(levels: list[Level]) -> str | None:
    """ "IQ2_XXS needs an importance matrix" for the levels llama.cpp refuses without one; None if none."""
    names = [level.name for level in levels if level.needs_matrix]
    if not names:
        return None
    return f"{', '.join(names)} {'needs' if len(names) == 1 else 'need'} an importance matrix"


# Nominal bits per weight where a level's own differs from llama.cpp's quantize table (gguf_levels),
# which is measured on Llama-3-8B's mixture.
_NOMINAL_BPW = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K_M": 5.7,
    "Q5_K_S": 5.5,
    "Q5_0": 5.5,
    "Q5_1": 6.0,
    "Q4_K_M": 4.9,
    "Q4_K_S": 4.6,
    "Q4_0": 4.5,
    "Q4_1": 5.0,
    "Q3_K_L": 4.3,
    "Q3_K_M": 3.9,
    "Q3_K_S": 3.5,
    "Q2_K": 3.35,
}
# llama.cpp refuses these without a matrix (tensor_requires_imatrix and llama_tensor_get_type_impl in
# src/llama-quant.cpp): their mixtures hold IQ1/IQ2/IQ3_XXS tensors, or Q2_K ones in a Q2_K_S file.
# IQ3_XS's middle layers' ffn_gate/ffn_up are IQ3_XXS; IQ2_M is mostly IQ2_S.
_NEED_MATRIX = {"IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "Q2_K_S"}


def _level(name: str) -> Level:
    ftype = gguf.LlamaFileType.ALL_F32 if name == "F32" else gguf.LlamaFileType[f"MOSTLY_{name}"]
    return Level(name, ftype, _NOMINAL_BPW.get(name, LEVEL_BITS[name]), name in _NEED_MATRIX)


LEVELS: dict[str, Level] = {name.lower(): _level(name) for name in LEVEL_NAMES}


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
