"""llama.cpp's importance-matrix files: written, read back, read as llama.cpp's format, refused when bad."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from ondevice.imatrix_file import (
    ImatrixEntry,
    ImatrixError,
    ImportanceMatrix,
    check_for_model,
    read_imatrix,
    write_imatrix,
)


def _matrix() -> ImportanceMatrix:
    rng = np.random.default_rng(0)
    return ImportanceMatrix(
        {
            "blk.0.attn_q.weight": ImatrixEntry(
                rng.random((1, 8), dtype=np.float32) * 5, np.array([10.0], np.float32)
            ),
            "blk.0.ffn_down_exps.weight": ImatrixEntry(
                rng.random((3, 4), dtype=np.float32), np.array([4.0, 0.0, 2.0], np.float32)
            ),
        },
        ("calibration.txt",),
        chunk_count=4,
        chunk_size=512,
    )


def test_written_matrix_reads_back_equal(tmp_path):
    matrix = _matrix()
    back = read_imatrix(write_imatrix(matrix, tmp_path / "m.imatrix.gguf"))
    assert (back.datasets, back.chunk_count, back.chunk_size) == (("calibration.txt",), 4, 512)
    assert back.entries.keys() == matrix.entries.keys()
    for name, entry in matrix.entries.items():
        np.testing.assert_array_equal(back.entries[name].sums, entry.sums)
        np.testing.assert_array_equal(back.entries[name].counts, entry.counts)
    assert not list(tmp_path.glob("*.partial"))


def test_file_has_llama_cpps_layout(tmp_path):
    """What llama-imatrix writes: general.type, the three imatrix keys, NAME.in_sum2 as ne [cols, n_mat]
    and NAME.counts as ne [1, n_mat], all F32, and no architecture."""
    reader = gguf.GGUFReader(write_imatrix(_matrix(), tmp_path / "m.gguf"))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields == {
        "general.type": "imatrix",
        "imatrix.datasets": ["calibration.txt"],
        "imatrix.chunk_count": 4,
        "imatrix.chunk_size": 512,
    }
    shapes = {t.name: ([int(n) for n in t.shape], t.tensor_type) for t in reader.tensors}
    f32 = gguf.GGMLQuantizationType.F32
    assert shapes == {
        "blk.0.attn_q.weight.in_sum2": ([8, 1], f32),
        "blk.0.attn_q.weight.counts": ([1, 1], f32),
        "blk.0.ffn_down_exps.weight.in_sum2": ([4, 3], f32),
        "blk.0.ffn_down_exps.weight.counts": ([1, 3], f32),
    }


def test_means_divide_by_counts_and_are_one_where_nothing_was_counted():
    entry = _matrix().entries["blk.0.ffn_down_exps.weight"]
    means = entry.means().reshape(3, 4)
    np.testing.assert_allclose(means[0], entry.sums[0] / 4)
    np.testing.assert_array_equal(means[1], np.ones(4, np.float32))
    np.testing.assert_allclose(means[2], entry.sums[2] / 2)


def test_legacy_dat_file_is_read_as_means_times_calls(tmp_path):
    values = np.array([2.0, 4.0, 6.0], dtype="<f4")
    name = b"blk.0.ffn_up.weight"
    dataset = b"wiki.train.raw"
    blob = struct.pack("<ii", 1, len(name)) + name + struct.pack("<ii", 5, 3) + values.tobytes()
    blob += struct.pack("<ii", 7, len(dataset)) + dataset
    (tmp_path / "old.dat").write_bytes(blob)
    matrix = read_imatrix(tmp_path / "old.dat")
    assert (matrix.datasets, matrix.chunk_count) == (("wiki.train.raw",), 7)
    np.testing.assert_allclose(matrix.means()["blk.0.ffn_up.weight"], values / 5)


def test_matrix_for_another_model_is_refused():
    matrix = _matrix()
    weights = {"blk.0.attn_q.weight": [8, 16], "blk.0.ffn_down_exps.weight": [4, 5, 3]}
    check_for_model(matrix, weights)
    with pytest.raises(ImatrixError, match=r"another model.*8 values.*needs 9"):
        check_for_model(matrix, {**weights, "blk.0.attn_q.weight": [9, 16]})
    with pytest.raises(ImatrixError, match="another model: 1 of its 2 entries name no weight"):
        check_for_model(matrix, {"blk.0.attn_q.weight": [8, 16]})


def test_nan_values_are_refused_on_write_and_on_read(tmp_path):
    good = _matrix()
    sums = good.entries["blk.0.attn_q.weight"].sums.copy()
    sums[0, 3] = np.nan
    bad = ImportanceMatrix({"blk.0.attn_q.weight": ImatrixEntry(sums, np.array([1.0], np.float32))}, (), 1, 1)
    with pytest.raises(ImatrixError, match="NaN"):
        write_imatrix(bad, tmp_path / "bad.gguf")
    assert not list(tmp_path.iterdir())
    # A file another tool wrote with a NaN in it.
    path = write_imatrix(good, tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    reader = gguf.GGUFReader(path)
    tensor = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight.in_sum2")
    struct.pack_into("<f", data, int(tensor.data_offset), float("nan"))
    path.write_bytes(bytes(data))
    with pytest.raises(ImatrixError, match=r"blk\.0\.attn_q\.weight holds NaN"):
        read_imatrix(path)


def test_truncated_and_non_imatrix_files_are_refused(tmp_path):
    path = write_imatrix(_matrix(), tmp_path / "m.gguf")
    (tmp_path / "cut.gguf").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImatrixError, match="not a readable GGUF"):
        read_imatrix(tmp_path / "cut.gguf")
    model = gguf.GGUFWriter(tmp_path / "model.gguf", arch="llama")
    model.add_type(gguf.GGUFType.MODEL)
    model.add_tensor("blk.0.attn_q.weight", np.ones((4, 4), np.float32))
    model.write_header_to_file()
    model.write_kv_data_to_file()
    model.write_tensors_to_file()
    model.close()
    with pytest.raises(ImatrixError, match="type 'model', not an importance matrix"):
        read_imatrix(tmp_path / "model.gguf")
    (tmp_path / "notes.txt").write_text("hello, not a matrix")
    with pytest.raises(ImatrixError, match="neither a GGUF nor a legacy imatrix"):
        read_imatrix(tmp_path / "notes.txt")
    with pytest.raises(ImatrixError, match="cannot read"):
        read_imatrix(tmp_path / "missing.gguf")
