"""llama.cpp's importance-matrix files: read (its GGUF format and the legacy `.dat`), write (GGUF),
and check one against a model's weights.

GGUF format (`general.type = imatrix`, as `llama-imatrix` writes it): for each weight NAME a tensor
`NAME.in_sum2` (F32, ne = [n_cols, n_mat]) holding per-column sums of the squared activations that
entered the weight, and `NAME.counts` (F32, ne = [1, n_mat]) how many rows were summed; n_mat > 1
only for MoE expert weights. Metadata `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`.
The quantizer wants per-column means, sum / count (1 where nothing was counted, as llama.cpp does).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from .atomic import atomic_path
from .errors import OndeviceError

SUMS_SUFFIX = ".in_sum2"
COUNTS_SUFFIX = ".counts"
GGUF_MAGIC = b"GGUF"


class ImatrixError(OndeviceError):
    """A file is not a usable importance matrix, or not one for this model."""


@dataclass(frozen=True)
class ImatrixEntry:
    """One weight's statistics: `sums` float32 (n_mat, n_cols), `counts` float32 (n_mat,)."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def size(self) -> int:
        """Values the quantizer gets for this weight: n_cols * n_mat (ne[0] * ne[2] of the weight)."""
        return int(self.sums.size)

    def means(self) -> np.ndarray:
        """Flat float32 per-column means, expert after expert; 1 for an expert nothing reached."""
        counts = self.counts.reshape(-1, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(counts > 0, self.sums / np.where(counts > 0, counts, 1), 1.0)
        return np.ascontiguousarray(means, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class ImportanceMatrix:
    """What `llama-imatrix` (or `ondevice imatrix`) collected over a calibration text."""

    entries: dict[str, ImatrixEntry]
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    chunk_size: int = 0

    def means(self) -> dict[str, np.ndarray]:
        return {name: entry.means() for name, entry in self.entries.items()}


def read_imatrix(path: str | Path) -> ImportanceMatrix:
    """A matrix from a GGUF imatrix or a legacy `.dat` file, checked: ImatrixError names what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ImatrixError(f"{path}: cannot read: {e.strerror or e}") from e
    matrix = _read_gguf(path) if magic == GGUF_MAGIC else _read_legacy(path)
    _check_values(path, matrix)
    return matrix


def write_imatrix(matrix: ImportanceMatrix, path: str | Path) -> Path:
    """Write `matrix` in llama.cpp's GGUF imatrix format (temp file, renamed when complete)."""
    path = Path(path)
    _check_values(path, matrix)
    with atomic_path(path) as partial:
        writer = gguf.GGUFWriter(partial, arch="")
        # llama-imatrix writes no architecture: the file describes weights, not a model.
        writer.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)
        writer.add_type(gguf.GGUFType.IMATRIX)
        writer.add_array(gguf.Keys.IMatrix.DATASETS, list(matrix.datasets))
        writer.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, matrix.chunk_count)
        writer.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, matrix.chunk_size)
        for name in sorted(matrix.entries):
            entry = matrix.entries[name]
            writer.add_tensor(name + SUMS_SUFFIX, np.asarray(entry.sums, dtype=np.float32))
            writer.add_tensor(name + COUNTS_SUFFIX, np.asarray(entry.counts, dtype=np.float32).reshape(-1, 1))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def check_for_model(matrix: ImportanceMatrix, weights: Mapping[str, Sequence[int]], origin: str = "") -> None:
    """ImatrixError unless every entry names one of `weights` (GGUF name -> ne) with its size
    (ne[0] * ne[2]): a matrix collected on another model must not steer this one's quantizer."""
    where = f"{origin}: " if origin else ""
    unknown = sorted(set(matrix.entries) - set(weights))
    if unknown:
        raise ImatrixError(
            f"{where}the importance matrix is for another model: {len(unknown)} of its "
            f"{len(matrix.entries)} entries name no weight of this one (first: {unknown[0]})"
        )
    for name, entry in matrix.entries.items():
        ne = [*weights[name], 1, 1]
        expected = int(ne[0]) * int(ne[2])
        if entry.size != expected:
            raise ImatrixError(
                f"{where}the importance matrix is for another model: {name} has {entry.size} values, "
                f"this model's weight needs {expected}"
            )


def _read_gguf(path: Path) -> ImportanceMatrix:
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, struct.error, IndexError) as e:
        raise ImatrixError(f"{path}: not a readable GGUF file ({e})") from e
    fields = reader.fields
    kind = _field_value(reader, gguf.Keys.General.TYPE)
    if kind is not None and kind != gguf.GGUFType.IMATRIX:
        raise ImatrixError(f"{path}: a GGUF of type {kind!r}, not an importance matrix")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ImatrixError(
                f"{path}: {tensor.name} is {tensor.tensor_type.name}, an importance matrix is F32"
            )
        data = np.array(tensor.data, dtype=np.float32)
        if tensor.name.endswith(SUMS_SUFFIX):
            ne = [int(n) for n in tensor.shape] + [1]
            sums[tensor.name.removesuffix(SUMS_SUFFIX)] = data.reshape(ne[1], ne[0])
        elif tensor.name.endswith(COUNTS_SUFFIX):
            counts[tensor.name.removesuffix(COUNTS_SUFFIX)] = data.reshape(-1)
        else:
            raise ImatrixError(f"{path}: tensor {tensor.name} is not part of an importance matrix")
    if not sums:
        raise ImatrixError(f"{path}: no importance matrix entries")
    unpaired = sorted(set(sums) ^ set(counts))
    if unpaired:
        raise ImatrixError(f"{path}: {unpaired[0]} has sums without counts or counts without sums")
    entries = {}
    for name, values in sums.items():
        if counts[name].size != values.shape[0]:
            raise ImatrixError(
                f"{path}: {name} has {values.shape[0]} rows of sums but {counts[name].size} counts"
            )
        entries[name] = ImatrixEntry(values, counts[name])
    datasets = _field_value(reader, gguf.Keys.IMatrix.DATASETS)
    if gguf.Keys.IMatrix.CHUNK_SIZE not in fields or gguf.Keys.IMatrix.CHUNK_COUNT not in fields:
        raise ImatrixError(f"{path}: missing imatrix metadata (imatrix.chunk_count, imatrix.chunk_size)")
    return ImportanceMatrix(
        entries,
        tuple(datasets or ()),
        int(_field_value(reader, gguf.Keys.IMatrix.CHUNK_COUNT) or 0),
        int(_field_value(reader, gguf.Keys.IMatrix.CHUNK_SIZE) or 0),
    )


def _field_value(reader: gguf.GGUFReader, key: str) -> object:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _read_legacy(path: Path) -> ImportanceMatrix:
    """llama.cpp's old `.dat`: count, then per entry name, ncall, nval and nval floats (means * ncall);
    optionally the chunk count and a dataset name."""
    data = path.read_bytes()
    offset = 0

    def take(fmt: str) -> tuple:
        nonlocal offset
        size = struct.calcsize(fmt)
        if offset + size > len(data):
            raise ImatrixError(f"{path}: truncated, or neither a GGUF nor a legacy imatrix file")
        values = struct.unpack_from(fmt, data, offset)
        offset += size
        return values

    (n_entries,) = take("<i")
    if not 0 < n_entries < 1_000_000:
        raise ImatrixError(f"{path}: neither a GGUF nor a legacy imatrix file")
    entries = {}
    for _ in range(n_entries):
        (length,) = take("<i")
        if not 0 < length < 4096:
            raise ImatrixError(f"{path}: neither a GGUF nor a legacy imatrix file (bad name length)")
        try:
            name = bytes(take(f"<{length}s")[0]).decode()
        except UnicodeDecodeError as e:
            raise ImatrixError(f"{path}: neither a GGUF nor a legacy imatrix file (bad name)") from e
        ncall, nval = take("<ii")
        if nval < 1 or offset + 4 * nval > len(data):
            raise ImatrixError(f"{path}: truncated at entry {name}")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=offset).astype(np.float32)
        offset += 4 * nval
        entries[name] = ImatrixEntry(values.reshape(1, -1), np.array([ncall], dtype=np.float32))
    chunk_count, datasets = 0, ()
    if offset + 4 <= len(data):
        (chunk_count,) = take("<i")
        if offset + 4 <= len(data):
            (length,) = take("<i")
            if length > 0:
                datasets = (bytes(take(f"<{length}s")[0]).decode(errors="replace"),)
    return ImportanceMatrix(entries, datasets, chunk_count, 0)


def _check_values(path: Path, matrix: ImportanceMatrix) -> None:
    for name, entry in matrix.entries.items():
        if not (np.all(np.isfinite(entry.sums)) and np.all(np.isfinite(entry.counts))):
            raise ImatrixError(f"{path}: {name} holds NaN or infinite values")
        if np.any(entry.sums < 0) or np.any(entry.counts < 0):
            raise ImatrixError(f"{path}: {name} holds negative values; sums of squares cannot be")
