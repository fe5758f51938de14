"""The phi3 family on tiny random checkpoints built with transformers, one of Phi-4-mini's shape
(LongRoPE, partial rotary, tied embeddings, GQA, a byte-level BPE with GPT-4o's split) and one of
Phi-3.5-mini's (LongRoPE over every dimension, untied, a Llama-style SentencePiece BPE with byte
fallback): our F32 GGUF through llama.cpp against transformers in both LongRoPE regimes, token ids,
F16 and Q8_0 through ondevice's runtime, and configs or fused tensors it must refuse in one line.

LongRoPE picks its factors in transformers by sequence length and in llama.cpp by context size, each
against original_max_position_embeddings (512 here). Both regimes are matched: a sequence shorter than
512 in a 512-token context (short factors on both sides), and one longer than 512 in a 1024-token
context (long factors on both). A sequence shorter than 512 in a larger context is the one regime that
cannot match: llama.cpp would take the long factors for every position, transformers the short ones.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
from click.testing import CliRunner

from ondevice.cli import cli
from ondevice.converters.hf_to_gguf import FAMILIES, convert_directory
from ondevice.gguf_file import read_gguf
from ondevice.kinds import Kind
from ondevice.runtime.engine import WorkerModel, single_turn
from ondevice.runtime.protocol import GenerationParams, LoadOptions
from tests.support.cli import invoke, one_error_line
from tests.support.convert import (
    VARIED_TEXT,
    assert_same_token_ids,
    llama_logits,
    top1_then_max_diff,
    transformers_ids,
    transformers_logits,
)
from tests.support.convert_phi3 import (
    ORIGINAL_CONTEXT,
    ROTARY_DIMS,
    TINY_PHI4_MINI,
    TINY_PHI35_MINI,
    build_tiny_phi4_mini,
    build_tiny_phi35_mini,
    rope_parameters,
)

pytest.importorskip("transformers")

# Measured max |diff|, short factors then long: Phi-4-mini shape 2.2e-3 (425 tokens) and 2.2e-3 (850),
# Phi-3.5-mini shape 1.6e-3 (427) and 4.2e-3 (852), with logits up to ~21. It grows with the position:
# the rotary angles are rounded differently in float32 (llama.cpp steps each pair's frequency by
# repeated multiplication, transformers takes a power) and the attention factor (1.155 on q and on k)
# sharpens the scores that amplify it. The wrong factors move these logits by more than 20, so the
# bound still tells a wrong choice from rounding.
MAX_ABS_LOGIT_DIFF = 0.01
# The directory names become general.name. "phi-3" in it gives llama.cpp's Phi-3 tokenizer tweaks,
# which need <s>, </s> and <unk>: right for Phi-3.5-mini, and a load failure for Phi-4-mini's vocab.
BUILDERS = {"phi4-mini": build_tiny_phi4_mini, "phi-3.5-mini": build_tiny_phi35_mini}
KEYS = list(BUILDERS)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Each tiny checkpoint, built the first time a test asks for it."""

    class Lazy(dict):
        def __missing__(self, key: str) -> Path:
            self[key] = BUILDERS[key](tmp_path_factory.mktemp(f"tiny-{key}"))
            return self[key]

    return Lazy()


@pytest.fixture(scope="module")
def f32_ggufs(checkpoints, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("f32")

    class Lazy(dict):
        def __missing__(self, key: str) -> Path:
            self[key] = convert_directory(checkpoints[key], out / f"{key}.gguf", "f32")
            return self[key]

    return Lazy()


@pytest.fixture(scope="module")
def checkpoint(checkpoints) -> Path:
    return checkpoints["phi4-mini"]


def _edited_copy(checkpoint: Path, directory: Path, edit) -> Path:
    """A copy of the checkpoint with `edit` applied to its config.json."""
    shutil.copytree(checkpoint, directory)
    path = directory / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    edit(config)
    path.write_text(json.dumps(config), encoding="utf-8")
    return directory


def _rope_factors(path: Path) -> dict[str, list[float]]:
    reader = gguf.GGUFReader(path)
    return {t.name: np.asarray(t.data).tolist() for t in reader.tensors if t.name.startswith("rope_factors")}


@pytest.mark.parametrize("key", KEYS)
def test_f32_logits_match_transformers_with_short_and_long_factors(key, checkpoints, f32_ggufs):
    checkpoint, f32_gguf = checkpoints[key], f32_ggufs[key]
    short = transformers_ids(checkpoint, VARIED_TEXT)
    assert 300 <= len(short) <= ORIGINAL_CONTEXT
    short_reference = transformers_logits(checkpoint, short)
    diff = top1_then_max_diff(llama_logits(f32_gguf, short, n_ctx=ORIGINAL_CONTEXT), short_reference)
    assert diff < MAX_ABS_LOGIT_DIFF, ("short factors", diff)

    long = transformers_ids(checkpoint, VARIED_TEXT * 2)
    assert len(long) > ORIGINAL_CONTEXT and long[: len(short)] == short
    long_reference = transformers_logits(checkpoint, long)
    diff = top1_then_max_diff(llama_logits(f32_gguf, long, n_ctx=2 * ORIGINAL_CONTEXT), long_reference)
    assert diff < MAX_ABS_LOGIT_DIFF, ("long factors", diff)
    # The two regimes really differ on the same tokens, so each comparison above checks its factors.
    regimes_apart = float(np.abs(long_reference[: len(short)] - short_reference).max())
    assert regimes_apart > 100 * MAX_ABS_LOGIT_DIFF


@pytest.mark.parametrize(
    ("key", "model", "pre"), [("phi4-mini", "gpt2", "gpt-4o"), ("phi-3.5-mini", "llama", "default")]
)
def test_token_ids_match_transformers(key, model, pre, checkpoints, f32_ggufs):
    meta = read_gguf(f32_ggufs[key]).metadata
    assert meta["tokenizer.ggml.model"] == model and meta["tokenizer.ggml.pre"] == pre
    assert_same_token_ids(checkpoints[key], f32_ggufs[key])


def test_phi4_mini_metadata_and_tensors_are_what_llama_cpps_phi3_loader_reads(f32_ggufs):
    f32_gguf = f32_ggufs["phi4-mini"]
    summary = read_gguf(f32_gguf)
    meta = summary.metadata
    assert meta["general.architecture"] == "phi3"
    assert meta["phi3.rope.dimension_count"] == ROTARY_DIMS  # partial rotary: 24 of 32
    assert meta["phi3.rope.scaling.original_context_length"] == ORIGINAL_CONTEXT
    assert meta["phi3.context_length"] == TINY_PHI4_MINI["max_position_embeddings"]
    assert meta["phi3.attention.sliding_window"] == TINY_PHI4_MINI["sliding_window"]
    scale = TINY_PHI4_MINI["max_position_embeddings"] / ORIGINAL_CONTEXT
    attn_factor = math.sqrt(1 + math.log(scale) / math.log(ORIGINAL_CONTEXT))
    assert meta["phi3.rope.scaling.attn_factor"] == pytest.approx(attn_factor, rel=1e-6)
    assert meta["phi3.attention.head_count_kv"] == 2
    shapes = {t.name: tuple(t.shape) for t in summary.tensors}
    hidden, ffn = TINY_PHI4_MINI["hidden_size"], TINY_PHI4_MINI["intermediate_size"]
    assert shapes["blk.0.attn_qkv.weight"] == (hidden, (4 + 2 * 2) * 32)  # GGUF order: columns first
    assert shapes["blk.1.ffn_up.weight"] == (hidden, 2 * ffn)  # gate and up, still fused
    assert not {"blk.0.attn_q.weight", "blk.0.ffn_gate.weight", "output.weight"} & set(shapes)  # tied
    factors = _rope_factors(f32_gguf)
    for key in ("long_factor", "short_factor"):
        name = f"rope_factors_{key.split('_')[0]}.weight"
        assert factors[name] == np.asarray(rope_parameters()[key], dtype=np.float32).tolist()


def test_phi35_mini_rotates_every_dimension_and_keeps_its_output(f32_ggufs):
    summary = read_gguf(f32_ggufs["phi-3.5-mini"])
    meta = summary.metadata
    head_dim = TINY_PHI35_MINI["hidden_size"] // TINY_PHI35_MINI["num_attention_heads"]
    assert meta["phi3.rope.dimension_count"] == head_dim
    assert meta["phi3.attention.sliding_window"] == TINY_PHI35_MINI["sliding_window"]
    assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.bos_token_id"] == 1
    shapes = {t.name: tuple(t.shape) for t in summary.tensors}
    assert shapes["output.weight"] == (TINY_PHI35_MINI["hidden_size"], TINY_PHI35_MINI["vocab_size"])
    assert shapes["blk.0.attn_qkv.weight"][1] == 3 * TINY_PHI35_MINI["hidden_size"]  # no GQA
    assert shapes["rope_factors_long.weight"] == (head_dim // 2,)


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_outputs_load_and_generate(outtype, checkpoint, isolated_home):
    result = CliRunner().invoke(
        cli, ["convert", str(checkpoint), "--outtype", outtype, "--name", "phi4-mini", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["architecture"] == "phi3"
    path = Path(info["path"])
    assert read_gguf(path).file_type_name == outtype.upper()
    with WorkerModel(path, LoadOptions(n_ctx=256)) as worker:
        params = GenerationParams(max_tokens=8, temperature=0)
        finished = worker.generate(single_turn(Kind.BASE, False, "Once upon a time", params))
        assert finished.stats.generated_tokens > 0


# -- config.json as the Hub has it ---------------------------------------------------------------------


def _as_written_before_transformers_5(config: dict) -> None:
    """Phi-4-mini's config.json on the Hub: rope_scaling with `type`, the other RoPE keys flat."""
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
    del rope["original_max_position_embeddings"]  # flat only, as the Hub's file has it
    config["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}


def _without_longrope(config: dict) -> None:
    """Phi-3-mini-4k's: no rope scaling at all."""
    rope = config["rope_parameters"]
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": rope["rope_theta"]}


def test_a_config_written_before_transformers_5_converts_the_same(checkpoint, f32_ggufs, tmp_path):
    directory = _edited_copy(checkpoint, tmp_path / "ckpt", _as_written_before_transformers_5)
    old = convert_directory(directory, tmp_path / "old.gguf", "f32")
    drop = {"general.name"}
    ours, reference = read_gguf(old), read_gguf(f32_ggufs["phi4-mini"])
    assert {k: v for k, v in ours.metadata.items() if k not in drop} == {
        k: v for k, v in reference.metadata.items() if k not in drop
    }
    assert [(t.name, t.shape) for t in ours.tensors] == [(t.name, t.shape) for t in reference.tensors]
    assert _rope_factors(old) == _rope_factors(f32_ggufs["phi4-mini"])


def test_without_longrope_there_are_no_factors(checkpoint, tmp_path):
    directory = _edited_copy(checkpoint, tmp_path / "ckpt", _without_longrope)
    summary = read_gguf(convert_directory(directory, tmp_path / "plain.gguf", "f32"))
    assert "phi3.rope.scaling.attn_factor" not in summary.metadata
    assert summary.metadata["phi3.rope.dimension_count"] == 32  # every dimension: no partial factor
    assert not [t.name for t in summary.tensors if t.name.startswith("rope_factors")]


# -- refused in one line ---------------------------------------------------------------------------------


def _drop(*keys: str):
    def edit(config: dict) -> None:
        for key in keys:
            config.pop(key, None)
            config["rope_parameters"].pop(key, None)

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _drop("original_max_position_embeddings"),
            "config.json lacks 'original_max_position_embeddings', which a phi3 model needs",
        ),
        (_drop("rope_theta"), "config.json lacks 'rope_theta', which a phi3 model needs"),
        (_drop("long_factor"), "config.json's LongRoPE lacks 'long_factor', which a phi3 model needs"),
        (
            lambda c: c["rope_parameters"].update(short_factor=[1.0] * 16),
            "config.json's short_factor has 16 values; 12 rotary pairs need 12",
        ),
        (
            lambda c: c["rope_parameters"].update(rope_type="dynamic"),
            "RoPE scaling 'dynamic' is not supported for phi3",
        ),
        (lambda c: c.update(head_dim=64), "config.json's head_dim 64 is not hidden_size / heads (32)"),
    ],
)
def test_configs_llama_cpp_cannot_take_are_one_line(checkpoint, tmp_path, edit, message):
    directory = _edited_copy(checkpoint, tmp_path / "ckpt", edit)
    one_error_line(invoke("convert", str(directory), "--outtype", "f32"), message)


def _with_tensor(checkpoint: Path, directory: Path, name: str, cut) -> Path:
    """A copy of the checkpoint whose tensor `name` is replaced by `cut(tensor)`."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, directory)
    index = json.loads((directory / "model.safetensors.index.json").read_text(encoding="utf-8"))
    shard = directory / index["weight_map"][name]
    tensors = load_file(shard)
    tensors[name] = cut(tensors[name]).contiguous()
    save_file(tensors, shard, metadata={"format": "pt"})
    return directory


@pytest.mark.parametrize(
    ("name", "rows", "implied"),
    [
        ("model.layers.0.self_attn.qkv_proj.weight", 192, 256),  # q and k only: the v rows are missing
        ("model.layers.1.mlp.gate_up_proj.weight", 192, 384),  # one half of gate_up
    ],
)
def test_a_fused_tensor_of_the_wrong_size_is_one_line(checkpoint, tmp_path, name, rows, implied):
    directory = _with_tensor(checkpoint, tmp_path / "ckpt", name, lambda t: t[:rows])
    one_error_line(
        invoke("convert", str(directory)),
        f"tensor {name!r} has shape [{rows}, 128]; config.json implies [{implied}, 128]",
    )


def test_unsupported_model_type_lists_phi3(checkpoint, tmp_path):
    directory = _edited_copy(checkpoint, tmp_path / "ckpt", lambda c: c.update(model_type="phi4mm"))
    line = one_error_line(invoke("convert", str(directory)), "model_type 'phi4mm' is not supported")
    assert "phi3" in FAMILIES and "phi3" in line
