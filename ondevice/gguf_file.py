"""Read and validate a GGUF file's header before llama.cpp is allowed to see the file.

llama.cpp trusts parts of a GGUF header and can abort() or allocate wildly on a bad one, so every
model file goes through :func:`read_gguf` first. The parser reads the memory-mapped file through a
bounded cursor: every count and length is checked against the bytes that remain *before* anything
is allocated or looped over, so a hostile header costs at most one pass over the file's bytes.

Only little-endian GGUF v2 and v3 are accepted (the versions llama.cpp reads). The tables of value
types and tensor types come from gguf-py, the reference implementation that ships with llama.cpp.
What a valid file holds is a `GGUFSummary` (`ondevice.gguf_summary`).

A model may be split over several files (llama.cpp's gguf-split: `NAME-00001-of-00003.gguf`, ...): each
shard is a valid GGUF with `split.*` metadata and some of the tensors, and llama.cpp opens the first and
finds the others by name. :func:`read_gguf_model` validates every shard and sums them into one summary.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import gguf

from ondevice.errors import GGUFError
from ondevice.gguf_summary import ARCHITECTURE_KEY, ArrayInfo, GGUFSummary, TensorInfo

__all__ = ["read_gguf"]

SUPPORTED_VERSIONS = (2, 3)
MAX_LISTED_ARRAY = 64  # longer metadata arrays are summarised as ArrayInfo, never materialised
MAX_TENSOR_NAME_BYTES = 63  # llama.cpp's GGML_MAX_NAME is 64 including the terminating NUL
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_STRING_BYTES = 1 << 30  # GGUF_MAX_STRING_LENGTH in llama.cpp's gguf.cpp
ALIGNMENT_KEY = gguf.Keys.General.ALIGNMENT

# llama.cpp's llama_split_path: PREFIX-%05d-of-%05d.gguf, shards numbered from 1.

_INT64_MAX = (1 << 63) - 1
_FIXED_HEADER_BYTES = 24  # magic, u32 version, u64 tensor count, u64 metadata count
# The smallest possible encodings; they bound the header's counts before any loop runs.
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name length, 1-byte name, n_dims, one dim, type, offset

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")

_VT = gguf.GGUFValueType


class _ValueType:
    """Encoding of GGUF metadata value types: fixed-size scalars, length-prefixed strings, arrays."""

    SCALAR: ClassVar[dict[int, struct.Struct]] = {
        _VT.UINT8: struct.Struct("<B"),
        _VT.INT8: struct.Struct("<b"),
        _VT.UINT16: struct.Struct("<H"),
        _VT.INT16: struct.Struct("<h"),
        _VT.UINT32: struct.Struct("<I"),
        _VT.INT32: struct.Struct("<i"),
        _VT.FLOAT32: struct.Struct("<f"),
        _VT.BOOL: struct.Struct("<?"),
        _VT.UINT64: struct.Struct("<Q"),
        _VT.INT64: struct.Struct("<q"),
        _VT.FLOAT64: struct.Struct("<d"),
    }
    STRING_MIN_BYTES = 8  # the u64 length prefix of an empty string

    @classmethod
    def name(cls, vtype: int) -> str:
        try:
            return _VT(vtype).name
        except ValueError:
            return f"unknown type {vtype}"


class _Invalid(Exception):
    """A problem with the file's bytes; read_gguf adds the file name and raises GGUFError."""


class _Cursor:
    """Bounded little-endian reads over the mapped file; an overrun raises instead of reading past the end."""

    __slots__ = ("_view", "end", "pos")

    def __init__(self, view: memoryview, pos: int) -> None:
        self._view = view
        self.end = len(view)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int, what: str) -> int:
        start = self.pos
        if n > self.end - start:
            raise _Invalid(
                f"file is truncated in the header ({what} at byte {start} needs {n} bytes, "
                f"{self.end - start} left)"
            )
        self.pos = start + n
        return start

    def unpack(self, fmt: struct.Struct, what: str) -> Any:
        return fmt.unpack_from(self._view, self._take(fmt.size, what))[0]

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self._view, self._take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self._view, self._take(8, what))[0]

    def i64(self, what: str) -> int:
        return _I64.unpack_from(self._view, self._take(8, what))[0]

    def skip(self, n: int, what: str) -> None:
        self._take(n, what)

    def count(self, what: str, unit: str, min_item_bytes: int) -> int:
        """Read a u64 item count; refuse it unless that many items could fit in the rest of the file."""
        at = self.pos
        n = self.u64(f"{what} length")
        if n * min_item_bytes > self.remaining:
            needed = (
                f"{n} {unit}" if min_item_bytes == 1 else f"{n} {unit} (at least {n * min_item_bytes} bytes)"
            )
            raise _Invalid(f"{what} at byte {at} claims {needed}, but only {self.remaining} bytes remain")
        return n

    def text(self, n: int, what: str) -> str:
        start = self._take(n, what)
        try:
            return str(self._view[start : start + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise _Invalid(f"{what} at byte {start} is not valid UTF-8") from exc

    def string(self, what: str) -> str:
        n = self.count(what, "bytes", 1)
        if n > MAX_STRING_BYTES:
            raise _Invalid(f"{what} is {n} bytes long, more than llama.cpp accepts ({MAX_STRING_BYTES})")
        return self.text(n, what)

    def skip_strings(self, n: int, what: str) -> None:
        """Step over n strings by their length prefixes without decoding them (vocabularies are huge)."""
        view, end, pos = self._view, self.end, self.pos
        unpack_u64 = _U64.unpack_from
        for i in range(n):
            if end - pos < 8:
                raise _Invalid(f"file is truncated in the header ({what} element {i} at byte {pos})")
            (length,) = unpack_u64(view, pos)
            pos += 8 + length
            if pos > end or length > MAX_STRING_BYTES:
                raise _Invalid(
                    f"{what} element {i} at byte {pos - length - 8} claims {length} bytes, "
                    f"but only {end - (pos - length)} bytes remain"
                )
        self.pos = pos


def read_gguf(path: str | os.PathLike[str]) -> GGUFSummary:
    """Parse and validate a GGUF file's header.

    Raises GGUFError with one line naming the file and the problem.
    """
    path = Path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise GGUFError(f"{path}: no such file") from None
    except OSError as exc:
        raise GGUFError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the name
        raise GGUFError(f"{path!r}: not a usable file name ({exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise GGUFError(f"{path}: is a directory, not a GGUF file")
    if not stat.S_ISREG(info.st_mode):
        # Opening a FIFO would block forever, and a device has no meaningful size.
        raise GGUFError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise GGUFError(f"{path}: empty file")
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise GGUFError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except ValueError as exc:  # mmap refuses a file emptied since the fstat
        raise GGUFError(f"{path}: cannot read the file ({exc})") from None
    with mapped:
        view = memoryview(mapped)
        try:
            return _parse(path, view)
        except _Invalid as exc:
            raise GGUFError(f"{path}: {exc}") from None
        finally:
            view.release()


def _parse(path: Path, view: memoryview) -> GGUFSummary:
    size = len(view)
    version = _check_preamble(view)
    cur = _Cursor(view, 8)
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    room = size - _FIXED_HEADER_BYTES
    if n_tensors * _MIN_TENSOR_INFO_BYTES > room:
        raise _Invalid(f"header claims {n_tensors} tensors but the file has {size} bytes")
    if n_kv * _MIN_KV_BYTES > room:
        raise _Invalid(f"header claims {n_kv} metadata entries but the file has {size} bytes")
    if n_tensors * _MIN_TENSOR_INFO_BYTES + n_kv * _MIN_KV_BYTES > room:
        raise _Invalid(
            f"header claims {n_tensors} tensors and {n_kv} metadata entries but the file has {size} bytes"
        )

    metadata, alignment = _read_metadata(cur, n_kv)
    entries = _read_tensor_infos(cur, n_tensors)
    # llama.cpp pads the header to the alignment only when there is tensor data to align.
    data_offset = _align(cur.pos, alignment) if n_tensors else cur.pos
    if data_offset > size:
        raise _Invalid(
            f"header ends at byte {cur.pos}, so the tensor data would start at byte {data_offset}, "
            f"past the end of the file ({size} bytes)"
        )
    tensors = _place_tensors(entries, data_offset, alignment, size)
    return GGUFSummary(
        path=path,
        version=version,
        file_size=size,
        alignment=alignment,
        data_offset=data_offset,
        metadata=metadata,
        tensors=tensors,
    )


def _check_preamble(view: memoryview) -> int:
    """Check magic and version; return the version."""
    size = len(view)
    head = bytes(view[:4])
    if size < 4 or _U32.unpack_from(head) != (gguf.GGUF_MAGIC,):
        if size < 4 and b"GGUF".startswith(head):
            raise _Invalid(f"file is truncated in the header ({size} bytes)")
        raise _Invalid(f"not a GGUF file (magic {head!r})")
    if size < _FIXED_HEADER_BYTES:
        raise _Invalid(f"file is truncated in the header ({size} bytes, the fixed header alone is 24)")
    (version,) = _U32.unpack_from(view, 4)
    if version not in SUPPORTED_VERSIONS:
        (swapped,) = struct.unpack_from(">I", view, 4)
        if swapped in SUPPORTED_VERSIONS:
            raise _Invalid(f"big-endian GGUF (version {swapped}); only little-endian files are supported")
        raise _Invalid(f"unsupported GGUF version {version} (llama.cpp reads versions 2 and 3)")
    return version


def _read_metadata(cur: _Cursor, n_kv: int) -> tuple[dict[str, Any], int]:
    """Read the key/value section; return it and the data alignment it declares."""
    metadata: dict[str, Any] = {}
    alignment = gguf.GGUF_DEFAULT_ALIGNMENT
    for i in range(n_kv):
        key = cur.string(f"key of metadata entry {i}")
        if not key:
            raise _Invalid(f"metadata entry {i} has an empty key")
        if key in metadata:
            raise _Invalid(f"duplicate metadata key {key!r}")
        vtype = cur.u32(f"value type of {key!r}")
        value = _read_value(cur, key, vtype)
        if key == ALIGNMENT_KEY:
            if vtype != _VT.UINT32:
                raise _Invalid(f"{ALIGNMENT_KEY} must be a UINT32, not {_ValueType.name(vtype)}")
            if value == 0 or value & (value - 1):
                raise _Invalid(f"{ALIGNMENT_KEY} is {value}, which is not a power of two")
            alignment = value
        elif key == ARCHITECTURE_KEY and vtype != _VT.STRING:
            raise _Invalid(f"{ARCHITECTURE_KEY} must be a STRING, not {_ValueType.name(vtype)}")
        metadata[key] = value
    return metadata, alignment


def _read_value(cur: _Cursor, key: str, vtype: int) -> Any:
    scalar = _ValueType.SCALAR.get(vtype)
    if scalar is not None:
        return cur.unpack(scalar, f"value of {key!r}")
    if vtype == _VT.STRING:
        return cur.string(f"value of {key!r}")
    if vtype == _VT.ARRAY:
        return _read_array(cur, key)
    raise _Invalid(f"key {key!r} has unknown value type {vtype}")


def _read_array(cur: _Cursor, key: str) -> list[Any] | ArrayInfo:
    etype = cur.u32(f"element type of {key!r}")
    if etype == _VT.ARRAY:
        raise _Invalid(f"key {key!r} is a nested array, which llama.cpp does not support")
    scalar = _ValueType.SCALAR.get(etype)
    if scalar is None and etype != _VT.STRING:
        raise _Invalid(f"key {key!r} is an array of unknown value type {etype}")
    item_bytes = scalar.size if scalar is not None else _ValueType.STRING_MIN_BYTES
    n = cur.count(f"array {key!r}", "elements", item_bytes)
    if n <= MAX_LISTED_ARRAY:
        return [_read_value(cur, f"{key}[{j}]", etype) for j in range(n)]
    if scalar is not None:
        cur.skip(n * item_bytes, f"array {key!r}")
    else:
        cur.skip_strings(n, f"array {key!r}")
    return ArrayInfo(_VT(etype).name, n)


def _read_tensor_infos(cur: _Cursor, n_tensors: int) -> list[tuple[str, tuple[int, ...], int, int, int]]:
    """Read the tensor info section: (name, shape, ggml type, offset in the data section, n_bytes)."""
    entries = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name_length = cur.count(f"name of tensor {i}", "bytes", 1)
        if name_length == 0:
            raise _Invalid(f"tensor {i} has an empty name")
        if name_length > MAX_TENSOR_NAME_BYTES:
            raise _Invalid(
                f"tensor {i} has a {name_length}-byte name; llama.cpp allows at most {MAX_TENSOR_NAME_BYTES}"
            )
        name = cur.text(name_length, f"name of tensor {i}")
        if "\0" in name:  # ggml cuts names at the NUL, so two distinct names could collide
            raise _Invalid(f"tensor {i} name {name!r} contains a NUL byte")
        if name in seen:
            raise _Invalid(f"duplicate tensor name {name!r}")
        seen.add(name)

        n_dims = cur.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise _Invalid(f"tensor {name!r} has {n_dims} dimensions; llama.cpp needs 1 to {MAX_DIMS}")
        shape = tuple(cur.i64(f"dimension {j} of tensor {name!r}") for j in range(n_dims))
        n_elements = 1
        for j, dim in enumerate(shape):
            if dim < 1:
                raise _Invalid(f"tensor {name!r} dimension {j} is {dim}; it must be at least 1")
            n_elements *= dim
        if n_elements > _INT64_MAX:
            raise _Invalid(f"tensor {name!r} with shape {shape} has more elements than an int64 can count")

        ggml_type = cur.u32(f"type of tensor {name!r}")
        sizes = gguf.GGML_QUANT_SIZES.get(ggml_type)
        if sizes is None:
            raise _Invalid(f"tensor {name!r} has unknown ggml type {ggml_type}")
        block_size, type_size = sizes
        if shape[0] % block_size:
            raise _Invalid(
                f"tensor {name!r} has rows of {shape[0]} elements, not a multiple of the "
                f"{gguf.GGMLQuantizationType(ggml_type).name} block size ({block_size})"
            )
        offset = cur.u64(f"data offset of tensor {name!r}")
        entries.append((name, shape, ggml_type, offset, n_elements // block_size * type_size))
    return entries


def _place_tensors(
    entries: list[tuple[str, tuple[int, ...], int, int, int]], data_offset: int, alignment: int, size: int
) -> tuple[TensorInfo, ...]:
    """Check that every tensor's data lies inside the file, aligned, and where llama.cpp will look for it."""
    tensors = []
    for name, shape, ggml_type, relative, n_bytes in entries:
        if relative % alignment:
            raise _Invalid(
                f"tensor {name!r} offset {relative} is not a multiple of the alignment ({alignment})"
            )
        start = data_offset + relative
        if start + n_bytes > size:
            raise _Invalid(
                f"tensor {name!r} data (offset {start}, {n_bytes} bytes) runs past the end of the file "
                f"({size} bytes)"
            )
        tensors.append(TensorInfo(name, shape, ggml_type, start, n_bytes))

    by_offset = sorted(tensors, key=lambda t: t.offset)
    for before, after in pairwise(by_offset):
        if after.offset < before.offset + before.n_bytes:
            raise _Invalid(
                f"tensors {before.name!r} (bytes {before.offset}-{before.offset + before.n_bytes}) and "
                f"{after.name!r} (from byte {after.offset}) overlap"
            )

    # llama.cpp also refuses any layout but the packed one: header order, each tensor padded to the alignment.
    expected = 0
    for tensor in tensors:
        relative = tensor.offset - data_offset
        if relative != expected:
            raise _Invalid(
                f"tensor {tensor.name!r} data is at offset {relative} of the data section, but llama.cpp "
                f"expects {expected} (tensors packed in header order, each padded to {alignment} bytes)"
            )
        expected += _align(tensor.n_bytes, alignment)
    return tuple(tensors)


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment
