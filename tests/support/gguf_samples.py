"""Small GGUF files for tests: a valid one written by gguf-py, a raw encoder for broken ones, and a map
of the header fields worth corrupting.

``write_tiny_gguf`` is the fixture other tests reuse. ``encode_gguf`` writes exactly the bytes it is
told to (duplicate keys, bad UTF-8, misplaced tensors), which gguf-py's writer rightly refuses to do.
``header_layout`` finds field positions with gguf-py's reader, independently of ondevice's parser.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType

TINY_VOCAB_SIZE = 100
TINY_EMBEDDING = 16
TINY_FFN = 32
TINY_CONTEXT = 128
TINY_TOKENS = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(TINY_VOCAB_SIZE - 3)]


def write_tiny_gguf(
    path: str | Path,
    *,
    arch: str = "llama",
    n_layers: int = 1,
    chat_template: str | None = None,
    extra_kv: dict[str, Any] | None = None,
    name: str = "tiny test model",
) -> Path:
    """Write a small, structurally valid GGUF (not loadable by llama.cpp: the weights are arange noise).

    ``extra_kv`` values are written as their natural GGUF type (bool BOOL, int INT32, float FLOAT32,
    str STRING, list ARRAY); pass ``(value, gguf.GGUFValueType.X)`` to pick the type.
    """
    path = Path(path)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(TINY_CONTEXT)
    writer.add_embedding_length(TINY_EMBEDDING)
    writer.add_feed_forward_length(TINY_FFN)
    writer.add_block_count(n_layers)
    writer.add_head_count(2)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TINY_TOKENS)
    writer.add_token_scores([-float(i) for i in range(TINY_VOCAB_SIZE)])
    writer.add_token_types([1] * TINY_VOCAB_SIZE)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (extra_kv or {}).items():
        if isinstance(value, tuple):
            value, vtype = value
            writer.add_key_value(key, value, vtype)
        elif isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_key_value(key, value, VT.get_type(value))

    for name, array in tiny_tensors(n_layers).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_tensors(n_layers: int = 1) -> dict[str, np.ndarray]:
    """The tensors ``write_tiny_gguf`` writes, in order, as numpy arrays (numpy shape: ne0 last)."""

    def weights(shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return (np.arange(int(np.prod(shape))) % 7 / 7).reshape(shape).astype(dtype)

    tensors = {"token_embd.weight": weights((TINY_VOCAB_SIZE, TINY_EMBEDDING), np.float16)}
    for i in range(n_layers):
        tensors[f"blk.{i}.attn_norm.weight"] = weights((TINY_EMBEDDING,), np.float32)
        tensors[f"blk.{i}.attn_q.weight"] = weights((TINY_EMBEDDING, TINY_EMBEDDING), np.float16)
        tensors[f"blk.{i}.ffn_up.weight"] = weights((TINY_FFN, TINY_EMBEDDING), np.float16)
        tensors[f"blk.{i}.ffn_norm.weight"] = weights((TINY_EMBEDDING,), np.float32)
    tensors["output_norm.weight"] = weights((TINY_EMBEDDING,), np.float32)
    return tensors


# --- raw encoding, for files gguf-py's writer would refuse to produce ---------------------------


@dataclass
class RawTensor:
    """A tensor entry for ``encode_gguf``; ``offset=None`` packs it after the previous one."""

    name: str | bytes
    shape: Sequence[int]  # GGUF order, ne0 first
    ggml_type: int = QT.F32
    offset: int | None = None
    n_dims: int | None = None  # to lie about the dimension count
    data_bytes: int | None = None  # data to reserve; default: what shape and type need


def encode_string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("<Q", len(raw)) + raw


_SCALAR_FORMATS = {
    VT.UINT8: "<B",
    VT.INT8: "<b",
    VT.UINT16: "<H",
    VT.INT16: "<h",
    VT.UINT32: "<I",
    VT.INT32: "<i",
    VT.FLOAT32: "<f",
    VT.BOOL: "<?",
    VT.UINT64: "<Q",
    VT.INT64: "<q",
    VT.FLOAT64: "<d",
}


def encode_value(vtype: int, value: Any) -> bytes:
    """A value's bytes, without its type tag. ARRAY takes ``(element_type, [items])``; an unknown
    type takes raw bytes."""
    if vtype in _SCALAR_FORMATS:
        return struct.pack(_SCALAR_FORMATS[vtype], value)
    if vtype == VT.STRING:
        return encode_string(value)
    if vtype == VT.ARRAY:
        etype, items = value
        body = b"".join(encode_value(etype, item) for item in items)
        return struct.pack("<IQ", etype, len(items)) + body
    return bytes(value)


def tensor_data_bytes(shape: Sequence[int], ggml_type: int) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[QT(ggml_type)]
    return int(np.prod(shape, dtype=object)) // block * type_size


def encode_gguf(
    kv: Sequence[tuple[str | bytes, int, Any]] = (),
    tensors: Sequence[RawTensor] = (),
    *,
    arch: str | None = "llama",
    version: int = 3,
    alignment: int = gguf.GGUF_DEFAULT_ALIGNMENT,
    tensor_count: int | None = None,
    kv_count: int | None = None,
) -> bytes:
    """Encode a GGUF file byte for byte as told. ``arch`` adds general.architecture first; ``alignment``
    is only used for layout (add a general.alignment entry to ``kv`` to declare it)."""
    entries = list(kv)
    if arch is not None:
        entries.insert(0, (gguf.Keys.General.ARCHITECTURE, VT.STRING, arch))
    out = bytearray(b"GGUF")
    out += struct.pack(
        "<IQQ",
        version,
        len(tensors) if tensor_count is None else tensor_count,
        len(entries) if kv_count is None else kv_count,
    )
    for key, vtype, value in entries:
        out += encode_string(key) + struct.pack("<I", vtype) + encode_value(vtype, value)

    placed: list[tuple[int, int]] = []
    next_offset = 0
    for t in tensors:
        n_bytes = t.data_bytes if t.data_bytes is not None else tensor_data_bytes(t.shape, t.ggml_type)
        offset = next_offset if t.offset is None else t.offset
        next_offset = _pad(offset + n_bytes, alignment)
        placed.append((offset, n_bytes))
        n_dims = len(t.shape) if t.n_dims is None else t.n_dims
        out += encode_string(t.name) + struct.pack("<I", n_dims)
        out += b"".join(struct.pack("<q" if d < 0 else "<Q", d) for d in t.shape)
        out += struct.pack("<IQ", t.ggml_type, offset)
    if tensors:
        out += bytes(_pad(len(out), alignment) - len(out))
        data_end = max(offset + n for offset, n in placed)
        out += bytes(_pad(data_end, alignment))
    return bytes(out)


def _pad(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


# --- where the header fields are ------------------------------------------------------------------


@dataclass
class HeaderLayout:
    """Byte positions of header fields in a GGUF file, found with gguf-py's reader."""

    file_size: int
    header_end: int  # end of the tensor infos
    data_offset: int
    tensor_count_at: int = 8
    kv_count_at: int = 16
    key_length_at: dict[str, int] = field(default_factory=dict)
    value_type_at: dict[str, int] = field(default_factory=dict)
    value_at: dict[str, int] = field(default_factory=dict)  # array: its element type; string: its length
    tensor_name_length_at: dict[str, int] = field(default_factory=dict)
    tensor_n_dims_at: dict[str, int] = field(default_factory=dict)
    tensor_type_at: dict[str, int] = field(default_factory=dict)
    tensor_offset_at: dict[str, int] = field(default_factory=dict)
    u64_fields: list[int] = field(default_factory=list)  # every count, length, dimension and offset

    @property
    def first_string_length_at(self) -> int:
        return 24


def header_layout(path: str | Path) -> HeaderLayout:
    reader = gguf.GGUFReader(path)
    layout = HeaderLayout(file_size=Path(path).stat().st_size, header_end=0, data_offset=reader.data_offset)
    layout.u64_fields += [layout.tensor_count_at, layout.kv_count_at]
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        positions = _part_positions(fld.offset, fld.parts)
        layout.key_length_at[name] = positions[0]
        layout.value_type_at[name] = positions[2]
        layout.value_at[name] = positions[3]
        layout.u64_fields += [
            pos for pos, part in zip(positions, fld.parts, strict=True) if part.dtype == np.uint64
        ]
    for tensor in reader.tensors:
        fld = tensor.field
        positions = _part_positions(fld.offset, fld.parts)
        name_len_at, _, n_dims_at, dims_at, type_at, offset_at = positions
        layout.tensor_name_length_at[tensor.name] = name_len_at
        layout.tensor_n_dims_at[tensor.name] = n_dims_at
        layout.tensor_type_at[tensor.name] = type_at
        layout.tensor_offset_at[tensor.name] = offset_at
        layout.u64_fields += [name_len_at, offset_at] + [dims_at + 8 * j for j in range(len(tensor.shape))]
        layout.header_end = offset_at + 8
    return layout


def _part_positions(start: int, parts: Sequence[np.ndarray]) -> list[int]:
    positions = []
    for part in parts:
        positions.append(start)
        start += int(part.nbytes)
    return positions


def put_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4 :]


def put_u64(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<Q", value) + data[at + 8 :]
