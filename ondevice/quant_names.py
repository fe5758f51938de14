"""A store file's quantization name: llama.cpp's level, tagged when the file was made with an
importance matrix (`Q4_K_M-imat`) or with per-tensor type overrides (`Q4_K_M-custom`), so that such a
file sits beside the plain file of its level and the two can be measured side by side. Wherever levels
are ordered or estimated, the tagged name counts as its level (`base_level`)."""

from __future__ import annotations

import enum
import re


class QuantTag(str, enum.Enum):
    """What a tag after the level says about how the file was made."""

    IMATRIX = "imat"  # quantized with an importance matrix
    CUSTOM = "custom"  # some tensors' types chosen by hand (--tensor-type and the like)


# The levels llama.cpp's quantizer writes (`llama-quantize`'s names, less the ternary and test types),
# best first; F32, BF16 and F16 are what a converter writes. Profiles' ladders and `quantize --levels`
# take these.
LEVEL_NAMES = (
    "F32",
    "BF16",
    "F16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_1",
    "Q4_0",
    "IQ4_NL",
    "IQ4_XS",
    "Q3_K_L",
    "Q3_K_M",
    "IQ3_M",
    "Q3_K_S",
    "IQ3_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K",
    "IQ2_M",
    "Q2_K_S",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "IQ1_M",
    "IQ1_S",
)

# What llama-quantize (and ondevice) writes into a file quantized with a matrix (tools/quantize/quantize.cpp).
KV_IMATRIX_FILE = "quantize.imatrix.file"
KV_IMATRIX_DATASET = "quantize.imatrix.dataset"
KV_IMATRIX_ENTRIES = "quantize.imatrix.entries_count"
KV_IMATRIX_CHUNKS = "quantize.imatrix.chunks_count"

_TAGS = re.compile(r"((?:-(?:" + "|".join(t.value for t in QuantTag) + r"))+)$", re.IGNORECASE)


def quant_name(level: str, *, imatrix: bool = False, custom: bool = False) -> str:
    """The store name of a file at `level`: "Q4_K_M", "Q4_K_M-imat", "Q4_K_M-custom", "Q4_K_M-imat-custom"."""
    tags = [t for t, on in ((QuantTag.IMATRIX, imatrix), (QuantTag.CUSTOM, custom)) if on]
    return "-".join([level, *tags])


def base_level(quant: str) -> str:
    """The llama.cpp level a quantization name is made at: "Q4_K_M-imat" -> "Q4_K_M"."""
    return _TAGS.sub("", quant)


def canonical_quant(quant: str) -> str:
    """A quantization name as `quant_name` writes it, whatever its case: "q4_k_m-IMAT" -> "Q4_K_M-imat"."""
    tags = quant_tags(quant)
    return quant_name(
        base_level(quant).upper(), imatrix=QuantTag.IMATRIX in tags, custom=QuantTag.CUSTOM in tags
    )


def quant_tags(quant: str) -> set[QuantTag]:
    found = _TAGS.search(quant)
    return {QuantTag(t.lower()) for t in found.group(1).split("-") if t} if found else set()


def made_with_imatrix(quant: str) -> bool:
    return QuantTag.IMATRIX in quant_tags(quant)


def file_quant_name(level: str, metadata: dict[str, object]) -> str:
    """The quantization name of a GGUF outside the store: its level, tagged -imat when its metadata says
    a matrix was used (as llama-quantize records it), so such files are told apart wherever shown."""
    return quant_name(level, imatrix=KV_IMATRIX_ENTRIES in metadata)
