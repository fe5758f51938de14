"""The levels llama.cpp's quantizer makes (its file types), with their nominal bits per weight, and
which of them need an importance matrix."""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from .gguf_levels import LEVEL_BITS
from .quantize_options import QuantizeError

__all__ = ["LEVELS", "Level", "parse_levels"]


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: llama.cpp's file type and its nominal bits per weight (for estimates)."""

    name: str  # the level's name, e.g. "Q4_K_M"
    ftype: gguf.LlamaFileType
    nominal_bpw: float
    # llama.cpp refuses it without a matrix: its mixture holds IQ1/IQ2/IQ3_XXS tensors, or Q2_K ones
    # in a Q2_K_S file (tensor_requires_imatrix and llama_tensor_get_type_impl in src/llama-quant.cpp).
    needs_matrix: bool = False

    @property
    def uses_matrix(self) -> bool:
        """Whether an importance matrix changes what is written: not for float types, and Q8_0's
        quantizer ignores it (quantize_q8_0 in ggml-quants.c)."""
        return self.name not in ("F32", "F16", "BF16", "Q8_0")


def _level(name: str, nominal_bpw: float | None = None, needs_matrix: bool = False) -> Level:
    bpw = LEVEL_BITS[name] if nominal_bpw is None else nominal_bpw
    return Level(name, gguf.LlamaFileType[f"MOSTLY_{name}"], bpw, needs_matrix)


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
        # i-quants and Q2_K_S: nominal bits per weight from llama.cpp's quantize table (gguf_levels).
        _level("IQ4_NL"),
        _level("IQ4_XS"),
        _level("IQ3_M"),
        _level("IQ3_S"),
        _level("IQ3_XS", needs_matrix=True),  # its middle layers' ffn_gate/ffn_up are IQ3_XXS
        _level("IQ3_XXS", needs_matrix=True),
        _level("IQ2_M", needs_matrix=True),  # mostly IQ2_S
        _level("IQ2_S", needs_matrix=True),
        _level("IQ2_XS", needs_matrix=True),
        _level("IQ2_XXS", needs_matrix=True),
        _level("IQ1_M", needs_matrix=True),
        _level("IQ1_S", needs_matrix=True),
        _level("Q2_K_S", needs_matrix=True),
    )
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
