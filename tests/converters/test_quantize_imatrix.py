"""Quantizing with an importance matrix, at i-quant levels and with per-tensor types, on the SmolLM2
F16 (dequantized from the bundled Q4_1). The matrix is built from the weights (tests/support/imatrix):
these tests check what is written and refused, not what the matrix buys in quality."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ondevice.converters.gguf_levels import level_of
from ondevice.converters.quantize import parse_levels, quantize
from ondevice.converters.quantize_options import make_overrides
from ondevice.gguf_file import read_gguf
from ondevice.imatrix_file import ImatrixEntry, ImportanceMatrix, read_imatrix, write_imatrix
from ondevice.manifest import Manifest, imatrix_from_header, sha256_file
from ondevice.planning.plan import plan_load
from ondevice.prompting import Message
from ondevice.quant_names import base_level, made_with_imatrix, quant_name
from ondevice.refs import resolve
from ondevice.runtime.engine import WorkerModel, chat_turn
from ondevice.runtime.protocol import GenerationParams, LoadOptions
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line
from tests.support.gguf_split import untie_output
from tests.support.readme import json_fields

pytestmark = pytest.mark.models

NAME = "smollm2-135m-instruct"  # what quantizing NAME/F16.gguf by path names its outputs


def _generates(path: Path) -> str:
    messages = [Message("system", "Answer the question."), Message("user", "What is the capital of France?")]
    with WorkerModel(path, LoadOptions(n_ctx=512)) as worker:
        finished = worker.generate(chat_turn(True, messages, GenerationParams(max_tokens=16, temperature=0)))
    assert finished.stats.generated_tokens > 0 and finished.text.strip()
    return finished.text


def _types(path: Path) -> dict[str, str]:
    return {t.name: t.type_name for t in read_gguf(path).tensors}


def _nothing_written(home: Path) -> None:
    assert Store().entries() == []
    assert not list(home.rglob("*.gguf")) and not list(home.rglob("*.partial"))


def test_i_quant_levels_join_the_ladder_and_tagged_names_keep_their_level():
    levels = parse_levels("iq4_xs,IQ2_XXS,q4_k_m,iq3_m,q2_k_s")
    assert [lv.name for lv in levels] == ["IQ4_XS", "IQ2_XXS", "Q4_K_M", "IQ3_M", "Q2_K_S"]
    assert [lv.needs_matrix for lv in levels] == [False, True, False, False, True]
    assert [lv.nominal_bpw for lv in levels[:2]] == [4.25, 2.06]  # llama.cpp's quantize table
    assert quant_name("Q4_K_M", imatrix=True) == "Q4_K_M-imat"
    assert quant_name("Q4_K_M", imatrix=True, custom=True) == "Q4_K_M-imat-custom"
    assert base_level("Q4_K_M-imat-custom") == "Q4_K_M" and base_level("IQ4_XS") == "IQ4_XS"
    assert made_with_imatrix("q4_k_m-IMAT") and not made_with_imatrix("Q4_K_M-custom")
    assert level_of("SmolLM2-Q4_K_M-imat.gguf") == "Q4_K_M"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tensor-type", "ffn_down"], "expected PATTERN=TYPE"),
        (["--tensor-type", "=q8_0"], "expected PATTERN=TYPE"),
        (["--tensor-type", "ffn_down=q9_9"], "unknown ggml type"),
        (["--tensor-type", "ffn_(down=q8_0"], "is not a valid regex"),
        (["--tensor-type", r"blk\.\S+down=q8_0"], "upper-case escape"),
        (["--tensor-type", "(?<=blk)ffn_down=q8_0"], "no lookbehind"),
        (["--output-tensor-type", "q3"], "unknown ggml type"),
        (["--token-embedding-type", "q8_1"], "unknown ggml type"),
        (["--levels", "iq9_xxs"], "unknown quantization level"),
    ],
)
def test_bad_flag_values_are_one_line(flags, message, isolated_home):
    one_error_line(invoke("quantize", "no-such-model:F16", *flags), message)
    _nothing_written(isolated_home)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--levels", "q4_k_m,iq2_xxs"], "IQ2_XXS needs an importance matrix"),
        (["--levels", "iq1_s,q2_k_s"], "IQ1_S, Q2_K_S need an importance matrix"),
        (["--imatrix", "missing.imatrix"], "missing.imatrix: cannot read"),
        (["--tensor-type", "ffn_dwn=q8_0"], "the pattern matches no weight"),
        (["--tensor-type", "ffn_down=iq2_xxs"], "IQ2_XXS needs an importance matrix"),
        (["--output-tensor-type", "q8_0"], "has no output.weight"),
        (["--token-embedding-type", "q6_k"], "not a multiple of Q6_K's block of 256"),
    ],
)
def test_what_cannot_work_is_refused_before_anything_is_written(flags, message, smol_f16_path, isolated_home):
    one_error_line(invoke("quantize", str(smol_f16_path), "--levels", "q4_k_m", *flags), message)
    _nothing_written(isolated_home)


@pytest.mark.parametrize("mismatch", ["unknown name", "wrong size"])
def test_a_matrix_for_another_model_is_one_line_and_nothing_is_written(
    mismatch, smol_f16_path, smol_matrix, tmp_path, isolated_home
):
    entries = dict(read_imatrix(smol_matrix).entries)
    if mismatch == "unknown name":
        entries["blk.99.ffn_down.weight"] = entries["blk.0.ffn_down.weight"]
        expected = f"1 of its {len(entries)} entries name no weight of this one (first: blk.99.ffn_down"
    else:
        entry = entries["blk.3.attn_q.weight"]
        entries["blk.3.attn_q.weight"] = ImatrixEntry(entry.sums[:, :512], entry.counts)
        expected = "blk.3.attn_q.weight has 512 values, this model's weight needs 576"
    other = write_imatrix(ImportanceMatrix(entries, ("other",), 1, 512), tmp_path / "other.gguf")
    result = invoke("quantize", str(smol_f16_path), "--levels", "q4_k_m", "--imatrix", str(other))
    line = one_error_line(result, "is for another model", expected)
    assert "other.gguf" in line
    _nothing_written(isolated_home)


def test_q4_k_m_and_iq4_xs_with_a_matrix_sit_beside_the_plain_file(smol_f16_path, smol_matrix, isolated_home):
    matrix = read_imatrix(smol_matrix)
    levels = ["--levels", "q4_k_m,iq4_xs"]
    made = invoke("quantize", str(smol_f16_path), *levels, "--imatrix", str(smol_matrix), "--json")
    assert made.exit_code == 0, made.output
    plain = invoke("quantize", str(smol_f16_path), "--levels", "q4_k_m", "--json")
    assert plain.exit_code == 0, plain.output
    outputs = json.loads(made.stdout)["outputs"] + json.loads(plain.stdout)["outputs"]
    assert sorted({*json.loads(made.stdout), *outputs[0]}) == sorted(json_fields("quantize"))
    assert [o["ref"] for o in outputs] == [f"{NAME}:Q4_K_M-imat", f"{NAME}:IQ4_XS-imat", f"{NAME}:Q4_K_M"]
    assert [o["level"] for o in outputs] == ["Q4_K_M", "IQ4_XS", "Q4_K_M"]
    store = Store()
    assert sorted(e.manifest.quant for e in store.entries()) == ["IQ4_XS-imat", "Q4_K_M", "Q4_K_M-imat"]

    for output in outputs[:2]:
        entry = store.find(NAME, output["quant"])  # NAME:LEVEL-imat resolves
        assert resolve(f"{NAME}:{output['quant'].lower()}").path == entry.path
        record = entry.manifest.imatrix
        assert record is not None and record.sha256 == sha256_file(smol_matrix)
        assert (record.datasets, record.chunk_count, record.entries) == (["weights"], 1, len(matrix.entries))
        assert entry.manifest.overrides is None and entry.manifest.extra["level"] == output["level"].lower()
        summary = read_gguf(entry.path)
        assert summary.file_type_name == output["level"]
        # The file says so itself, as llama-quantize's do: outside the store it still reads as -imat.
        assert summary.metadata["quantize.imatrix.entries_count"] == len(matrix.entries)
        assert summary.metadata["quantize.imatrix.file"] == smol_matrix.name
        # What a pull of this file reads back: all the header holds (no sha256, no chunk size).
        assert imatrix_from_header(summary.metadata) == replace(record, sha256="", chunk_size=0)
        assert resolve(str(entry.path)).quant == output["quant"]
        info = invoke("models", "info", entry.manifest.ref, "--json")
        assert info.exit_code == 0, info.output
        assert json.loads(info.stdout)["imatrix"]["sha256"] == record.sha256
        _generates(entry.path)
    plain_entry = store.find(NAME, "Q4_K_M")
    assert plain_entry.manifest.imatrix is None and "imatrix" not in json.loads(
        invoke("models", "info", f"{NAME}:Q4_K_M", "--json").stdout
    )
    # The matrix changed what was written: same level, same tensor types, other bytes.
    imat_entry = store.find(NAME, "Q4_K_M-imat")
    assert _types(plain_entry.path) == _types(imat_entry.path)
    assert plain_entry.manifest.sha256 != imat_entry.manifest.sha256
    # Of the two files of one size, a NAME without :QUANT takes the one made with the matrix.
    assert plain_entry.manifest.bits_per_weight == imat_entry.manifest.bits_per_weight
    assert plan_load().best_fit(store.entries()).manifest.quant == "Q4_K_M-imat"
    human = invoke("models", "info", f"{NAME}:Q4_K_M-imat")
    assert f"{len(matrix.entries)} weights, 1 chunk" in human.stdout
    # A manifest written before these fields existed still reads, as made without either.
    data = json.loads(plain_entry.manifest_path.read_text())
    del data["imatrix"], data["overrides"]
    older = Manifest.from_json(json.dumps(data), plain_entry.manifest_path)
    assert older.imatrix is None and older.overrides is None


def test_iq2_xxs_with_a_matrix_loads_and_generates(smol_f16_path, smol_matrix, isolated_home):
    (result,) = quantize(str(smol_f16_path), "iq2_xxs", imatrix=smol_matrix)
    assert (result.ref, result.level) == (f"{NAME}:IQ2_XXS-imat", "IQ2_XXS")
    types = _types(result.path)
    # ffn_down rows (1536) are whole 256-blocks: the i-quant itself is there, not only its fallback.
    assert any(t == "IQ2_XXS" for name, t in types.items() if name.endswith("ffn_down.weight"))
    assert result.bits_per_weight < read_gguf(smol_f16_path).bits_per_weight / 3
    _generates(result.path)


def test_tensor_types_given_by_hand_are_the_types_in_the_file(smol_f16_path, tmp_path, isolated_home):
    # SmolLM2 ties its output layer to its embeddings; a copy with an output.weight of its own lets
    # --output-tensor-type act.
    source = untie_output(smol_f16_path, tmp_path / NAME / "F16.gguf")
    plain = invoke("quantize", str(source), "--levels", "q4_k_m", "--json")
    assert plain.exit_code == 0, plain.output
    flags = ["--tensor-type", "ffn_down=q8_0", "--output-tensor-type", "q5_1"]
    flags += ["--token-embedding-type", "q4_1"]
    custom = invoke("quantize", str(source), "--levels", "q4_k_m", *flags, "--json")
    assert custom.exit_code == 0, custom.output
    (output,) = json.loads(custom.stdout)["outputs"]
    assert output["quant"] == "Q4_K_M-custom"
    before = _types(Path(json.loads(plain.stdout)["outputs"][0]["path"]))
    after = _types(Path(output["path"]))
    downs = [name for name in after if name.endswith("ffn_down.weight")]
    assert len(downs) == 30 and {after[n] for n in downs} == {"Q8_0"} != {before[n] for n in downs}
    assert (after["output.weight"], after["token_embd.weight"]) == ("Q5_1", "Q4_1")
    assert (before["output.weight"], before["token_embd.weight"]) != ("Q5_1", "Q4_1")
    untouched = [n for n in after if n not in downs and n not in ("output.weight", "token_embd.weight")]
    assert {n: after[n] for n in untouched} == {n: before[n] for n in untouched}

    entry = Store().find(NAME, "Q4_K_M-custom")
    expected = make_overrides(["ffn_down=q8_0"], "q5_1", "q4_1")
    assert entry.manifest.overrides == expected and entry.manifest.imatrix is None
    info = json.loads(invoke("models", "info", entry.manifest.ref, "--json").stdout)
    assert info["overrides"] == {
        "tensor_types": [{"pattern": "ffn_down", "type": "Q8_0"}],
        "output_tensor_type": "Q5_1",
        "token_embedding_type": "Q4_1",
    }
    human = invoke("models", "info", entry.manifest.ref).stdout
    assert "ffn_down=Q8_0, output=Q5_1, token_embd=Q4_1" in human
    _generates(entry.path)


def test_a_level_the_matrix_cannot_change_is_written_plain_and_says_so(
    smol_f16_path, smol_matrix, isolated_home
):
    (result,) = quantize(str(smol_f16_path), "q8_0", imatrix=smol_matrix)
    assert result.ref == f"{NAME}:Q8_0" and "does not use an importance matrix" in result.notes[0]
    # `auto` computes nothing for it: no matrix is cached anywhere.
    (auto,) = quantize(str(smol_f16_path), "q8_0", imatrix="auto")
    assert "does not use an importance matrix" in auto.notes[0]
    assert not list(smol_f16_path.parent.glob("*.imatrix")) and not list(isolated_home.rglob("*.imatrix"))
    entry = Store().find(NAME, "Q8_0")
    assert entry.manifest.imatrix is None
    assert not any(key.startswith("quantize.imatrix") for key in read_gguf(entry.path).metadata)
