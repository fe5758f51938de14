"""Read safetensors checkpoints tensor by tensor, with numpy only and every header field checked.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping tensor names to
dtype, shape and [begin, end) offsets into the data that follows, then the data. The header is
untrusted: its size, each tensor's byte range (inside the data, matching its shape, not overlapping
another) and its dtype are checked before any tensor is touched. Tensors (or runs of their rows) are
read with positioned reads into memory that is freed once converted: a checkpoint never has to fit in
memory, and unlike a memory map, pages already converted do not stay in the process's resident set.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from ondevice.errors import OndeviceError

__all__ = ["Checkpoint", "SafetensorsError", "SafetensorsFile", "TensorRef"]

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the reference implementation enforces
INDEX_NAME = "model.safetensors.index.json"

# dtype name -> (bytes per element, numpy dtype as stored); BF16 is read as uint16 and widened.
_DTYPES: dict[str, tuple[int, np.dtype]] = {
    "F32": (4, np.dtype("<f4")),
    "F16": (2, np.dtype("<f2")),
    "BF16": (2, np.dtype("<u2")),
}


class SafetensorsError(OndeviceError):
    """A safetensors file or index is malformed or inconsistent."""


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes are: its file, dtype, shape and absolute byte range."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise SafetensorsError(f"duplicate key {key!r} in the header")
        result[key] = value
    return result


class SafetensorsFile:
    """One validated .safetensors file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block the read or never end
                raise SafetensorsError(f"{path.name} is not a regular file")
            size = info.st_size
            with open(path, "rb") as handle:
                prefix = handle.read(8)
                if len(prefix) < 8:
                    raise SafetensorsError(f"{path.name}: too short to be a safetensors file ({size} bytes)")
                (header_len,) = struct.unpack("<Q", prefix)
                if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                    raise SafetensorsError(
                        f"{path.name}: header claims {header_len} bytes; the file has {size - 8} after "
                        f"its length prefix and the limit is {MAX_HEADER_BYTES}"
                    )
                raw = handle.read(header_len)
        except OSError as exc:
            raise SafetensorsError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except SafetensorsError as exc:
            raise SafetensorsError(f"{path.name}: {exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SafetensorsError(f"{path.name}: header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path.name}: header is not a JSON object")
        self.data_start = 8 + header_len
        self.tensors = self._check(header, size - self.data_start)

    def _check(self, header: dict[str, object], data_size: int) -> dict[str, TensorRef]:
        refs: dict[str, TensorRef] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            where = f"{self.path.name}: tensor {name!r}"
            if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
                raise SafetensorsError(f"{where}: entry lacks dtype, shape or data_offsets")
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in _DTYPES:
                raise SafetensorsError(f"{where}: dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shape
            ):
                raise SafetensorsError(f"{where}: bad shape {shape!r}")
            if (
                not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size
            ):
                raise SafetensorsError(
                    f"{where}: data offsets {offsets!r} fall outside the {data_size} data bytes"
                )
            count = 1
            for dim in shape:
                count *= dim
            if (offsets[1] - offsets[0]) != count * _DTYPES[dtype][0]:
                raise SafetensorsError(
                    f"{where}: {offsets[1] - offsets[0]} bytes do not hold shape {shape} of {dtype}"
                )
            refs[name] = TensorRef(
                name,
                self.path,
                dtype,
                tuple(shape),
                self.data_start + offsets[0],
                self.data_start + offsets[1],
            )
        spans = sorted((r.start, r.end, r.name) for r in refs.values() if r.end > r.start)
        for (_, end, first), (start, _, second) in pairwise(spans):
            if start < end:
                raise SafetensorsError(f"{self.path.name}: tensors {first!r} and {second!r} overlap")
            if start > end:
                raise SafetensorsError(
                    f"{self.path.name}: {start - end} bytes between tensors {first!r} and {second!r} "
                    "belong to no tensor (safetensors allows no holes)"
                )
        covered_from = spans[0][0] - self.data_start if spans else 0
        covered_to = spans[-1][1] - self.data_start if spans else 0
        if covered_from != 0 or covered_to != data_size:
            raise SafetensorsError(
                f"{self.path.name}: the tensors cover data bytes {covered_from}..{covered_to} of {data_size} "
                "(safetensors allows no holes and no trailing bytes)"
            )
        return refs


class Checkpoint:
    """The safetensors weights of a checkpoint directory: one file, several, or shards with an index."""

    def __init__(self, directory: Path, root: Path | None = None) -> None:
        self.directory = directory
        self.root = root  # where links may lead (see safe_child); default: the directory itself
        self.files = self._files()
        self.tensors: dict[str, TensorRef] = {}
        for file in self.files:
            for name, ref in SafetensorsFile(file).tensors.items():
                if name in self.tensors:
                    raise SafetensorsError(f"tensor {name!r} appears in more than one safetensors file")
                self.tensors[name] = ref
        self._fds: dict[Path, int] = {}

    def _files(self) -> list[Path]:
        index = self.directory / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise SafetensorsError(f"{INDEX_NAME}: unreadable ({exc})") from None
            if not isinstance(weight_map, dict):
                raise SafetensorsError(f"{INDEX_NAME}: weight_map is not an object")
            names = sorted(set(weight_map.values()))
            files = [safe_child(self.directory, str(n), self.root) for n in names]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise SafetensorsError(f"{INDEX_NAME} names shards that are missing: {', '.join(missing)}")
            return files
        files = sorted(self.directory.glob("*.safetensors"))
        if not files:
            raise SafetensorsError(f"no .safetensors weights in {self.directory}")
        return files

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def read(self, name: str) -> np.ndarray:
        """The tensor as float32 (BF16 widened exactly, F16 converted exactly)."""
        ref = self.tensors[name]
        rows = ref.shape[0] if ref.shape else 1
        return self.read_rows(name, 0, rows)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the tensor (along its first axis) as float32."""
        ref = self.tensors[name]
        if not ref.shape:
            return self._decode(ref, self._pread(ref.path, ref.start, ref.end - ref.start), ())
        row_elements = int(np.prod(ref.shape[1:], dtype=np.int64))
        width = row_elements * _DTYPES[ref.dtype][0]
        data = self._pread(ref.path, ref.start + start * width, (stop - start) * width)
        return self._decode(ref, data, (stop - start, *ref.shape[1:]))

    @staticmethod
    def _decode(ref: TensorRef, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        raw = np.frombuffer(data, dtype=_DTYPES[ref.dtype][1])
        if ref.dtype == "BF16":
            # bf16 is the top half of a float32: shift the bits into place.
            return (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return raw.astype(np.float32).reshape(shape)

    def _pread(self, path: Path, offset: int, size: int) -> bytes:
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        fd, chunks, done = self._fds[path], [], 0
        while done < size:
            chunk = os.pread(fd, size - done, offset + done)
            if not chunk:
                raise SafetensorsError(f"{path.name}: ends inside tensor data (file changed while reading?)")
            chunks.append(chunk)
            done += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)


def safe_child(directory: Path, name: str, root: Path | None = None) -> Path:
    """`directory/name`, refusing names that would land outside `directory` (absolute, `..`), or whose
    links lead outside `root` (default: `directory`; the Hugging Face cache links a snapshot's files
    into the repo's blobs/ folder, so there `root` is the repo's cache folder)."""
    if not name or os.path.isabs(name) or "\\" in name or any(part in ("..", "") for part in name.split("/")):
        raise SafetensorsError(f"refusing file name {name!r}: it would escape {directory}")
    candidate = directory / name
    if not candidate.resolve().is_relative_to((root or directory).resolve()):
        raise SafetensorsError(f"refusing file name {name!r}: it resolves outside {root or directory}")
    return candidate
