"""The SmolLM2 F16 (dequantized once per session from the bundled Q4_1) and an importance matrix for
it, for tests of quantizing with a matrix.

The matrix here is built from the weights themselves (each column's mean square), not collected from
activations: it has the right names, sizes and values llama.cpp accepts, which is what plumbing tests
need; it says nothing about quality.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from ondevice.converters.dequantize import convert_gguf
from ondevice.imatrix_file import ImatrixEntry, ImportanceMatrix, write_imatrix
from ondevice.refs import ResolvedModel, resolve
from ondevice.store import Store


def matrix_from_weights(path: Path, dataset: str = "weights") -> ImportanceMatrix:
    """Per-column mean squares of every `blk.*` weight matrix of the GGUF at `path`."""
    entries = {}
    for tensor in gguf.GGUFReader(path).tensors:
        if tensor.name.startswith("blk.") and len(tensor.shape) == 2:
            rows = np.asarray(tensor.data, dtype=np.float32)  # (ne1, ne0): one row per output
            sums = np.square(rows).sum(axis=0, dtype=np.float64).astype(np.float32)
            entries[tensor.name] = ImatrixEntry(sums.reshape(1, -1), np.array([rows.shape[0]], np.float32))
    return ImportanceMatrix(entries, (dataset,), chunk_count=1, chunk_size=rows.shape[0])


@pytest.fixture(scope="session")
def smol_f16(smol: ResolvedModel, tmp_path_factory: pytest.TempPathFactory) -> ResolvedModel:
    """SmolLM2 dequantized to F16 from the bundled Q4_1 (`ondevice convert FILE.gguf`), in a store of
    its own: the source an importance matrix and a quantization ladder start from. Its file is
    NAME/F16.gguf, so quantizing it by path names the outputs smollm2-135m-instruct."""
    store = Store(tmp_path_factory.mktemp("f16-home"))
    return resolve(convert_gguf(str(smol.path), "f16", store=store).ref, store)


@pytest.fixture(scope="session")
def smol_f16_path(smol_f16: ResolvedModel) -> Path:
    return smol_f16.path


@pytest.fixture(scope="session")
def smol_matrix(smol_f16_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An importance matrix file for `smol_f16`, in llama.cpp's GGUF imatrix format."""
    path = tmp_path_factory.mktemp("imatrix") / "smol.imatrix.gguf"
    return write_imatrix(matrix_from_weights(smol_f16_path), path)
