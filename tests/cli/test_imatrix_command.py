"""ondevice imatrix: llama.cpp's flags, a matrix file llama.cpp reads, one line for each mistake."""

from __future__ import annotations

import json

import gguf
import pytest

from ondevice.calibration_text import stdlib_docstrings
from ondevice.imatrix_file import check_for_model, read_imatrix
from tests.support.cli import invoke, one_error_line
from tests.support.readme import json_fields

pytestmark = pytest.mark.models


def test_imatrix_writes_llama_cpps_file_and_reports_it(smol_f16, tmp_path):
    text = tmp_path / "calibration.txt"
    text.write_text(stdlib_docstrings()[:6000], encoding="utf-8")
    out = tmp_path / "out" / "smol.imatrix.gguf"
    out.parent.mkdir()
    args = ["imatrix", str(smol_f16.path), "-f", str(text), "--chunks", "2", "-c", "32", "-o", str(out)]
    result = invoke(*args, "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    assert "rounds up" not in result.output  # a chunk of 32 loads a context of 256 without a warning
    data = json.loads(result.stdout)
    assert sorted(data) == sorted(json_fields("imatrix"))  # the README lists exactly these
    assert data["path"] == str(out) and data["dataset"] == "calibration.txt"
    assert (data["entries"], data["n_chunks"], data["n_ctx"], data["tokens"]) == (210, 2, 32, 64)
    assert data["tps"] > 0 and data["model"]["quant"] == "F16" and data["model"]["path"] == str(smol_f16.path)
    matrix = read_imatrix(out)
    assert matrix.datasets == ("calibration.txt",) and matrix.chunk_count == 2
    weights = {t.name: [int(n) for n in t.shape] for t in gguf.GGUFReader(smol_f16.path).tensors}
    check_for_model(matrix, weights)
    assert {e.counts.tolist()[0] for e in matrix.entries.values()} == {64.0}
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # nothing else left behind


@pytest.mark.parametrize(
    ("make_args", "fragments"),
    [
        (lambda model, text: ["no-such-model:F16", "-f", text], ["no-such-model"]),
        (lambda model, text: [model, "-f", text + ".missing"], ["cannot read the text"]),
        (lambda model, text: [model, "-f", text, "-c", "4096"], ["shorter than one chunk of 4096"]),
        (lambda model, text: [model, "-c", "8"], ["8 is not in the range"]),
        (lambda model, text: [model, "-o", text + ".d/m.gguf"], ["short.txt.d does not exist"]),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(smol_f16, tmp_path, make_args, fragments):
    text = tmp_path / "short.txt"
    text.write_text("Only a few words here, far from a chunk.", encoding="utf-8")
    out = tmp_path / "m.gguf"
    # A later -o (the missing folder's case) wins over this one.
    result = invoke("imatrix", "-o", str(out), "--threads", "1", *make_args(str(smol_f16.path), str(text)))
    one_error_line(result, *fragments)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_an_empty_text_is_refused(smol_f16, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    result = invoke("imatrix", str(smol_f16.path), "-f", str(empty), "-o", str(tmp_path / "m.gguf"))
    one_error_line(result, "the calibration text is empty")
    assert not (tmp_path / "m.gguf").exists()
