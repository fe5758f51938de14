"""Importance matrices computed in our worker on SmolLM2's F16, checked against the model's weights, an
independent computation, llama.cpp's file format and the store's cache."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from ondevice.calibration_text import default_dataset, stdlib_docstrings
from ondevice.errors import UnknownReferenceError
from ondevice.imatrix import cache_key, cache_path, cached_imatrix, run_imatrix
from ondevice.imatrix_file import ImatrixError, ImportanceMatrix, check_for_model, read_imatrix, write_imatrix
from ondevice.refs import ResolvedModel
from ondevice.runtime import extra_bufts
from ondevice.runtime.faults import FAULT_ENV
from ondevice.runtime.protocol import LoadOptions
from ondevice.store import Store
from tests.support.tiny_moe import N_EMBD, N_EXPERT, N_EXPERT_USED, N_FF, N_LAYERS, write_tiny_moe

pytestmark = pytest.mark.models

CHUNKS, N_CTX = 2, 128
MATRIX_KINDS = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
ONE_THREAD = LoadOptions(n_threads=1)


@pytest.fixture(scope="module")
def collected(smol_f16: ResolvedModel) -> ImportanceMatrix:
    """Two chunks of 128 tokens of the default text (the standard library's docstrings)."""
    return run_imatrix(smol_f16, None, CHUNKS, N_CTX).matrix


def _weights(model: ResolvedModel) -> dict[str, list[int]]:
    reader = gguf.GGUFReader(model.path)
    return {t.name: [int(n) for n in t.shape] for t in reader.tensors}


def _tensor(model: ResolvedModel, name: str) -> np.ndarray:
    reader = gguf.GGUFReader(model.path)
    (tensor,) = [t for t in reader.tensors if t.name == name]
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float64)


def test_every_layer_matrix_has_an_entry_of_its_weights_size(smol_f16, collected):
    weights = _weights(smol_f16)
    matrices = {n for n, ne in weights.items() if n.startswith("blk.") and len(ne) >= 2}
    assert {n.split(".")[2] for n in matrices} == MATRIX_KINDS and len(matrices) == 30 * 7
    assert set(collected.entries) == matrices
    check_for_model(collected, weights, "smol F16")
    for name, entry in collected.entries.items():
        assert entry.size == weights[name][0] * ([*weights[name], 1, 1][2]), name
        assert np.isfinite(entry.sums).all() and (entry.sums > 0).all(), name
        # One count per dense weight: every token of every chunk entered it.
        assert entry.counts.tolist() == [CHUNKS * N_CTX], name
    assert (collected.datasets, collected.chunk_count, collected.chunk_size) == (
        (default_dataset(),),
        CHUNKS,
        N_CTX,
    )


def test_the_first_layers_input_sums_match_an_independent_computation(smol_f16, collected):
    """blk.0's attention sees RMSNorm(token embeddings) * attn_norm: computed here from the GGUF's own
    tensors and llama.cpp's tokens, the sums must be the worker's."""
    import llama_cpp

    vocab = llama_cpp.Llama(str(smol_f16.path), vocab_only=True, verbose=False)
    text = stdlib_docstrings().encode()
    tokens = vocab.tokenize(text, add_bos=True, special=False)
    adds_bos = len(tokens) == len(vocab.tokenize(text, add_bos=False, special=False)) + 1
    bos = vocab.token_bos()
    vocab.close()
    chunks = [tokens[i * N_CTX : (i + 1) * N_CTX] for i in range(CHUNKS)]
    for chunk in chunks:  # as llama-imatrix: BOS first in every chunk, when the model wants one
        chunk[0] = bos if adds_bos else chunk[0]
    embeddings = _tensor(smol_f16, "token_embd.weight")
    norm = _tensor(smol_f16, "blk.0.attn_norm.weight")
    eps = float(smol_f16.summary.metadata["llama.attention.layer_norm_rms_epsilon"])
    x = embeddings[np.array(chunks).reshape(-1)]
    normed = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * norm
    expected = (normed * normed).sum(axis=0)
    for kind in ("attn_q", "attn_k", "attn_v"):  # one input, three weights
        np.testing.assert_allclose(collected.entries[f"blk.0.{kind}.weight"].sums[0], expected, rtol=2e-3)
    np.testing.assert_array_equal(
        collected.entries["blk.3.ffn_gate.weight"].sums, collected.entries["blk.3.ffn_up.weight"].sums
    )


def test_written_matrix_reads_back_equal_and_as_llama_cpps_format(collected, tmp_path):
    path = write_imatrix(collected, tmp_path / "smol.imatrix.gguf")
    back = read_imatrix(path)
    assert back.entries.keys() == collected.entries.keys()
    for name, entry in collected.entries.items():
        np.testing.assert_array_equal(back.entries[name].sums, entry.sums)
        np.testing.assert_array_equal(back.entries[name].counts, entry.counts)
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert reader.fields["imatrix.chunk_size"].contents() == N_CTX
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    assert shapes["blk.0.ffn_down.weight.in_sum2"] == [1536, 1]
    assert shapes["blk.0.ffn_down.weight.counts"] == [1, 1]


def test_collection_survives_the_extra_buffer_type_crash(smol_f16, collected, monkeypatch):
    """A worker that dies by SIGILL on its first multi-token batch (AMX CPUs) is replaced without extra
    buffer types, and the chunk is collected again: the same matrix comes out (to the rounding of
    llama.cpp's other kernels)."""
    monkeypatch.setenv(FAULT_ENV, "SIGILL:extra-bufts")
    again = run_imatrix(smol_f16, None, CHUNKS, N_CTX).matrix
    assert extra_bufts.recorded() is not None  # the worker did die, and the collection went on
    assert again.entries.keys() == collected.entries.keys()
    for name, entry in collected.entries.items():
        difference = np.linalg.norm(again.entries[name].sums - entry.sums) / np.linalg.norm(entry.sums)
        assert difference < 5e-3, name
        np.testing.assert_array_equal(again.entries[name].counts, entry.counts)


def test_the_store_caches_the_matrix_beside_its_source(smol_f16, tmp_path):
    store = Store(smol_f16.path.parent.parent.parent)
    text = stdlib_docstrings()[:4000]
    events = []
    path = cached_imatrix(smol_f16, text, 1, 32, events.append, dataset="docstrings", options=ONE_THREAD)
    assert path.parent == smol_f16.path.parent and path.suffix == ".imatrix" and events
    assert read_imatrix(path).datasets == ("docstrings",) and read_imatrix(path).chunk_size == 32
    # The store's scan passes the cache by: no broken entry, the same models.
    entries, broken = store.scan()
    assert broken == [] and [e.path for e in entries] == [smol_f16.path]
    # Asked again, it is read from the cache; another text or chunk count is another matrix.
    events.clear()
    assert cached_imatrix(smol_f16, text, 1, 32, events.append, options=ONE_THREAD) == path and not events
    sha = smol_f16.manifest.sha256 if smol_f16.manifest else ""
    assert path == cache_path(smol_f16, cache_key(sha, text, 1, 32))
    keys = {cache_key(sha, text, 1, 32), cache_key(sha, text + ".", 1, 32), cache_key(sha, text, None, 32)}
    keys |= {cache_key(sha, text, 1, 64), cache_key("0" * 64, text, 1, 32)}
    assert len(keys) == 5
    # A damaged cache is computed again.
    path.write_bytes(b"GGUF broken")
    assert cached_imatrix(smol_f16, text, 1, 32, events.append, options=ONE_THREAD) == path and events
    read_imatrix(path)
    # Removing the source removes its matrices.
    copy = tmp_path / "copy"
    store_copy = Store(copy)
    name = smol_f16.manifest.name if smol_f16.manifest else ""
    (copy / "models" / name).mkdir(parents=True)
    for f in smol_f16.path.parent.iterdir():
        if not f.name.startswith("."):
            (copy / "models" / name / f.name).hardlink_to(f)
    store_copy.remove(name, "F16")
    assert not (copy / "models" / name).exists()


def test_a_file_outside_the_store_caches_in_the_stores_root(smol, tmp_path):
    model = write_tiny_moe(tmp_path / "moe.gguf", smol.path)
    store = Store(tmp_path / "home")
    text = stdlib_docstrings()[:3000]
    path = cached_imatrix(str(model), text, 1, 32, store=store, options=ONE_THREAD)
    assert path.parent == tmp_path / "home" / "imatrix" and read_imatrix(path).chunk_count == 1
    assert cached_imatrix(str(model), text, 1, 32, store=store) == path
    assert store.scan() == ([], [])


def test_expert_weights_get_one_row_of_sums_and_one_count_per_expert(smol, tmp_path):
    """A tiny Mixtral-style model: its MUL_MAT_ID inputs are summed per expert, fed only by the tokens
    routed there. Each token reaches N_EXPERT_USED experts, and the router saw each token once: the
    experts' sums add up to N_EXPERT_USED times the router's."""
    model = write_tiny_moe(tmp_path / "moe.gguf", smol.path)
    matrix = run_imatrix(str(model), stdlib_docstrings()[:8000], 2, 64, options=ONE_THREAD).matrix
    weights = {t.name: [int(n) for n in t.shape] for t in gguf.GGUFReader(model).tensors}
    check_for_model(matrix, weights, "tiny moe")
    for i in range(N_LAYERS):
        gate, up, down = (matrix.entries[f"blk.{i}.ffn_{k}_exps.weight"] for k in ("gate", "up", "down"))
        router = matrix.entries[f"blk.{i}.ffn_gate_inp.weight"]
        assert gate.sums.shape == (N_EXPERT, N_EMBD) and down.sums.shape == (N_EXPERT, N_FF)
        assert gate.counts.sum() == 2 * 64 * N_EXPERT_USED and (gate.counts > 0).sum() >= 2
        np.testing.assert_array_equal(gate.counts, down.counts)
        np.testing.assert_array_equal(gate.sums, up.sums)
        np.testing.assert_allclose(gate.sums.sum(axis=0), N_EXPERT_USED * router.sums[0], rtol=1e-4)
    back = read_imatrix(write_imatrix(matrix, tmp_path / "moe.imatrix.gguf"))
    np.testing.assert_array_equal(back.entries["blk.1.ffn_down_exps.weight"].counts, down.counts)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the calibration text is empty"), ("A few words.", "shorter than one chunk of 32")],
)
def test_bad_text_is_one_clear_error(smol_f16, text, message):
    with pytest.raises(ImatrixError, match=message):
        run_imatrix(smol_f16, text, None, 32, options=ONE_THREAD)


def test_an_unknown_reference_is_refused_before_any_work(isolated_home):
    with pytest.raises(UnknownReferenceError):
        run_imatrix("no-such-model:F16", "text " * 100, 1, 32)
