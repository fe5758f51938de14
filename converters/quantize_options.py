"""What a quantization asks for beyond its level, parsed and checked against the source before any
work starts: an importance matrix (with where it came from) and tensor types chosen by hand, under
llama-quantize's flag names (--imatrix, --tensor-type, --output-tensor-type, --token-embedding-type)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import gguf

from ondevice.errors import OndeviceError
from ondevice.gguf_summary import GGUFSummary
from ondevice.imatrix_file import ImportanceMatrix, check_for_model, read_imatrix
from ondevice.manifest import ImatrixRecord, QuantOverrides, TensorType, sha256_file
from ondevice.progress import ProgressFn
from ondevice.refs import ResolvedModel
from ondevice.store import Store

__all__ = [
    "AUTO",
    "NEEDS_MATRIX_TYPES",
    "TENSOR_TYPES",
    "MatrixInput",
    "QuantizeError",
    "auto_matrix",
    "check_matrix",
    "check_overrides",
    "load_matrix",
    "make_overrides",
    "parse_ggml_type",
    "parse_tensor_type",
    "resolve_matrix",
]

AUTO = "auto"  # --imatrix auto: a matrix computed from the source itself
# 16K tokens. A 4K-token matrix already cut SmolLM2's Q4_K_M KLD to 0.55x here; all of the default text
# (about 115 chunks) would take a 7B model on a laptop CPU the better part of an hour.
AUTO_CHUNKS = 32
# ggml types a weight can be stored in; Q8_1 and Q8_K are only dot-product intermediates.
TENSOR_TYPES = {
    t.name: t
    for t in gguf.GGMLQuantizationType
    if t.name not in {"Q8_1", "Q8_K", "I8", "I16", "I32", "I64", "F64"}
}
# llama.cpp refuses to write these without a matrix ("the result will be garbage"):
# tensor_requires_imatrix in src/llama-quant.cpp.
NEEDS_MATRIX_TYPES = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"})
TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"


class QuantizeError(OndeviceError):
    """A quantization cannot be done as asked, or llama.cpp's quantizer failed."""


@dataclass(frozen=True)
class MatrixInput:
    """An importance matrix and its provenance, as the manifest records it."""

    matrix: ImportanceMatrix
    record: ImatrixRecord  # its `file` names it in messages and in the output GGUF's quantize.imatrix.file


def load_matrix(path: str | Path) -> MatrixInput:
    """A matrix file (llama.cpp's GGUF imatrix or legacy .dat), read and checked, with its sha256."""
    path = Path(path)
    matrix = read_imatrix(path)
    record = ImatrixRecord(
        sha256=sha256_file(path),
        datasets=list(matrix.datasets),
        chunk_count=matrix.chunk_count,
        chunk_size=matrix.chunk_size,
        entries=len(matrix.entries),
        file=path.name,
    )
    return MatrixInput(matrix, record)


def auto_matrix(model: ResolvedModel, store: Store, progress: ProgressFn | None = None) -> MatrixInput:
    """--imatrix auto: the matrix of `model` itself over the default calibration text (its first
    AUTO_CHUNKS chunks of 512 tokens), computed once and cached in `store` next to it."""
    from ondevice.imatrix import DEFAULT_CTX, cached_imatrix  # the runtime's front door, only when asked for

    return load_matrix(cached_imatrix(model, None, AUTO_CHUNKS, DEFAULT_CTX, progress, store=store))


def resolve_matrix(
    value: str | Path | MatrixInput | None,
    model: ResolvedModel,
    store: Store,
    progress: ProgressFn | None = None,
) -> MatrixInput | None:
    """The matrix `value` names: a file, `auto`, or one already loaded; None for none."""
    if value is None or isinstance(value, MatrixInput):
        return value
    if str(value).strip().lower() == AUTO:
        return auto_matrix(model, store, progress)
    return load_matrix(value)


def check_matrix(matrix: MatrixInput, summary: GGUFSummary, source: str) -> None:
    """ImatrixError unless every entry of the matrix is a weight of `summary` with its size."""
    weights = {t.name: t.shape for t in summary.tensors}
    check_for_model(matrix.matrix, weights, origin=f"{matrix.record.file} for {source}")


def parse_ggml_type(text: str, flag: str) -> str:
    """A ggml type name in any case ("q8_0") as its canonical name ("Q8_0")."""
    name = text.strip().upper()
    if name not in TENSOR_TYPES:
        known = ", ".join(n.lower() for n in TENSOR_TYPES)
        raise QuantizeError(f"{flag} {text!r}: unknown ggml type; known: {known}")
    return name


def parse_tensor_type(text: str) -> TensorType:
    """`PATTERN=TYPE` as llama-quantize reads it: split at the first '=', the pattern lower-cased (it
    does so too; GGUF tensor names are lower case) and searched for in each tensor's name as a regex."""
    pattern, sep, type_name = text.partition("=")
    if not sep or not pattern.strip() or not type_name.strip():
        raise QuantizeError(f"--tensor-type {text!r}: expected PATTERN=TYPE, e.g. ffn_down=q8_0")
    pattern = pattern.strip()
    if re.search(r"\\[A-Z]", pattern):
        raise QuantizeError(
            f"--tensor-type {text!r}: the pattern is lower-cased, as llama-quantize does, which would "
            "change an upper-case escape such as \\S or \\W; write it without one"
        )
    if re.search(r"\(\?(?![=!:])", pattern):
        raise QuantizeError(
            f"--tensor-type {text!r}: llama.cpp's regexes are ECMAScript: no lookbehind, named groups "
            "or inline flags"
        )
    pattern = pattern.lower()
    try:
        re.compile(pattern)
    except re.error as exc:
        raise QuantizeError(f"--tensor-type {text!r}: {pattern!r} is not a valid regex ({exc})") from None
    return TensorType(pattern, parse_ggml_type(type_name, "--tensor-type"))


def make_overrides(
    tensor_types: Iterable[str | TensorType] = (),
    output_tensor_type: str | None = None,
    token_embedding_type: str | None = None,
) -> QuantOverrides | None:
    """The overrides the flags ask for, parsed; None when they ask for none."""
    overrides = QuantOverrides(
        [t if isinstance(t, TensorType) else parse_tensor_type(t) for t in tensor_types],
        parse_ggml_type(output_tensor_type, "--output-tensor-type") if output_tensor_type else None,
        parse_ggml_type(token_embedding_type, "--token-embedding-type") if token_embedding_type else None,
    )
    return None if overrides.empty else overrides


def check_overrides(overrides: QuantOverrides, summary: GGUFSummary, source: str, with_matrix: bool) -> None:
    """Refuse overrides that would do nothing on this source or that llama.cpp would refuse midway."""
    names = {t.name for t in summary.tensors if len(t.shape) >= 2}
    for override in overrides.tensor_types:
        flag = f"--tensor-type {override.pattern}={override.type.lower()}"
        if not any(re.search(override.pattern, name) for name in names):
            example = next((n for n in sorted(names) if n.startswith("blk.0.")), sorted(names)[0])
            raise QuantizeError(f"{flag}: the pattern matches no weight of {source} (e.g. {example})")
        if override.type in NEEDS_MATRIX_TYPES and not with_matrix:
            raise QuantizeError(f"{flag}: {override.type} needs an importance matrix (--imatrix FILE)")
    shapes = {t.name: t.shape for t in summary.tensors}
    for flag, tensor, type_name in (
        ("--output-tensor-type", OUTPUT, overrides.output_tensor_type),
        ("--token-embedding-type", TOKEN_EMBEDDING, overrides.token_embedding_type),
    ):
        if type_name is None:
            continue
        if tensor not in shapes:
            tied = " (its output layer is its token embeddings; use --token-embedding-type)"
            raise QuantizeError(f"{flag}: {source} has no {tensor}" + (tied if tensor == OUTPUT else ""))
        # llama.cpp takes these two types as given, without the fallback other tensors get.
        block = gguf.GGML_QUANT_SIZES[TENSOR_TYPES[type_name]][0]
        if shapes[tensor][0] % block:
            raise QuantizeError(
                f"{flag} {type_name.lower()}: rows of {tensor} in {source} are {shapes[tensor][0]} wide, "
                f"not a multiple of {type_name}'s block of {block}; choose a type with blocks of 32 (q8_0)"
            )
