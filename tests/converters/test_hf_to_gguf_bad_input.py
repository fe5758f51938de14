"""Checkpoints a converter must refuse with one clear line, and outputs that must never be half-written."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from ondevice.converters.hf_to_gguf import FAMILIES, ConvertError, convert, convert_directory
from ondevice.converters.safetensors_reader import SafetensorsError, SafetensorsFile, safe_child
from ondevice.gguf_file import read_gguf
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line

CONFIG = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "vocab_size": 8,
}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], header_patch=None) -> Path:
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    if header_patch is not None:
        header_patch(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return path


def llama_tensors(config=CONFIG) -> dict[str, np.ndarray]:
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    p = "model.layers.0."
    shapes = {
        "model.embed_tokens.weight": (v, h),
        "model.norm.weight": (h,),
        p + "input_layernorm.weight": (h,),
        p + "post_attention_layernorm.weight": (h,),
        p + "self_attn.q_proj.weight": (h, h),
        p + "self_attn.k_proj.weight": (kv, h),
        p + "self_attn.v_proj.weight": (kv, h),
        p + "self_attn.o_proj.weight": (h, h),
        p + "mlp.gate_proj.weight": (f, h),
        p + "mlp.up_proj.weight": (f, h),
        p + "mlp.down_proj.weight": (h, f),
    }
    return {name: np.full(shape, 0.01, np.float32) for name, shape in shapes.items()}


TOKENIZER = {
    "model": {"type": "BPE", "vocab": {c: i for i, c in enumerate("abcdefgh")}, "merges": []},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
    "added_tokens": [],
}


def checkpoint(directory: Path, config=CONFIG, tensors=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    write_safetensors(directory / "model.safetensors", tensors if tensors is not None else llama_tensors())
    return directory


def refused(*args: str) -> str:
    return one_error_line(invoke(*args))


def test_no_config_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert "has no config.json" in refused("convert", str(tmp_path))


def test_only_pickled_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    line = refused("convert", str(tmp_path))
    assert "only has pickled weights (pytorch_model.bin)" in line


def test_unknown_model_type_lists_the_supported(tmp_path):
    checkpoint(tmp_path, dict(CONFIG, model_type="mamba"))
    line = refused("convert", str(tmp_path))
    assert "model_type 'mamba' is not supported" in line
    for model_type in FAMILIES:
        assert model_type in line


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (lambda h: h["model.norm.weight"].update(data_offsets=[0, 128]), "overlap"),
        (lambda h: h["model.norm.weight"].update(data_offsets=[10**9, 10**9 + 128]), "fall outside"),
        (lambda h: h["model.norm.weight"].update(shape=[33]), "do not hold shape"),
        (lambda h: h["model.norm.weight"].update(dtype="I64"), "is not one of"),
    ],
)
def test_lying_safetensors_headers_are_refused(tmp_path, patch, message):
    write_safetensors(tmp_path / "model.safetensors", llama_tensors(), patch)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    assert message in refused("convert", str(tmp_path))


def test_oversized_or_truncated_header_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(SafetensorsError, match="header claims"):
        SafetensorsFile(path)
    path.write_bytes(b"abc")
    with pytest.raises(SafetensorsError, match="too short"):
        SafetensorsFile(path)
    path.write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(SafetensorsError, match="not a JSON object"):
        SafetensorsFile(path)


def test_a_tensor_with_the_wrong_shape(tmp_path):
    tensors = llama_tensors()
    tensors["model.layers.0.mlp.up_proj.weight"] = np.zeros((60, 32), np.float32)
    checkpoint(tmp_path, tensors=tensors)
    line = refused("convert", str(tmp_path))
    assert "'model.layers.0.mlp.up_proj.weight' has shape [60, 32]; config.json implies [64, 32]" in line


def test_shard_names_escaping_the_directory(tmp_path):
    checkpoint(tmp_path / "ckpt")
    index = {"weight_map": {"model.norm.weight": "../outside.safetensors"}}
    (tmp_path / "ckpt" / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "would escape" in refused("convert", str(tmp_path / "ckpt"))
    for bad in ("/etc/passwd", "a/../../b", "..", ""):
        with pytest.raises(SafetensorsError):
            safe_child(tmp_path, bad)
    assert safe_child(tmp_path, "sub/model.safetensors") == tmp_path / "sub" / "model.safetensors"


def test_unknown_outtype(tmp_path):
    with pytest.raises(ConvertError, match="unknown output type 'q4'"):
        convert_directory(checkpoint(tmp_path / "c"), tmp_path / "o.gguf", "q4")


def _convert_slowly(directory: str, home: str) -> None:
    import ondevice.converters.hf_to_gguf.base as base

    os.environ["ONDEVICE_HOME"] = home
    real_encode = base._encode

    def slow(array, qtype):  # the child is killed while it is inside the tensor data
        time.sleep(0.5)
        return real_encode(array, qtype)

    base._encode = slow
    convert(directory, "f32", name="killed")


def test_a_conversion_killed_mid_write_leaves_nothing_at_the_final_path(tmp_path, isolated_home):
    directory = checkpoint(tmp_path / "ckpt")
    child = mp.get_context("spawn").Process(target=_convert_slowly, args=(str(directory), str(isolated_home)))
    child.start()
    model_dir = Store().model_dir("killed")
    deadline = time.monotonic() + 30
    while not any(model_dir.glob(".*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(model_dir.glob(".*.partial")), "the child never started writing"
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert not (model_dir / "F32.gguf").exists() and not (model_dir / "F32.json").exists()
    # The next run cleans the dead writer's partial and publishes one complete file.
    result = convert(directory, "f32", name="killed")
    assert result.path == model_dir / "F32.gguf" and result.path.is_file()
    assert not any(model_dir.glob(".*.partial"))


def test_missing_or_unfaithful_tokenizers_are_refused_before_writing(tmp_path, isolated_home):
    directory = checkpoint(tmp_path / "ckpt")
    (directory / "tokenizer.json").unlink()
    assert "has no tokenizer.json" in refused("convert", str(directory))
    odd = dict(TOKENIZER, pre_tokenizer={"type": "Whitespace"})
    (directory / "tokenizer.json").write_text(json.dumps(odd))
    assert "unknown pre-tokenizer" in refused("convert", str(directory))
    assert Store().entries() == []


def test_links_may_lead_only_inside_the_given_root(tmp_path):
    """A Hub snapshot links its files into the repo's blobs/: allowed there, refused anywhere else."""
    from ondevice.converters.safetensors_reader import SafetensorsError, safe_child

    repo = tmp_path / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_bytes(b"x")
    snapshot = repo / "snapshots" / "0123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(repo / "blobs" / "abc")
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"x")
    (snapshot / "evil.safetensors").symlink_to(outside)
    assert safe_child(snapshot, "model.safetensors", root=repo) == snapshot / "model.safetensors"
    with pytest.raises(SafetensorsError, match="resolves outside"):
        safe_child(snapshot, "model.safetensors")  # without the root, the blob is outside
    with pytest.raises(SafetensorsError, match="resolves outside"):
        safe_child(snapshot, "evil.safetensors", root=repo)


# -- hardening: sizes, holes, completeness, values, ids, and files that are not files ------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_hidden_layers", 10**9, "num_hidden_layers is 1000000000, outside 0 .. 4096"),
        ("num_hidden_layers", "2", "num_hidden_layers is '2', not a number"),
        ("num_attention_heads", 0, "num_attention_heads is 0; it must be at least 1"),
        ("max_position_embeddings", 2**40, "max_position_embeddings is 1099511627776"),
        ("vocab_size", -8, "vocab_size is -8"),
        ("rms_norm_eps", float("nan"), "rms_norm_eps"),
    ],
)
def test_impossible_config_numbers_are_one_line_before_any_allocation(tmp_path, key, value, message):
    checkpoint(tmp_path, dict(CONFIG, **{key: value}))
    started = time.monotonic()
    line = refused("convert", str(tmp_path))
    assert message in line and "internal error" not in line
    assert time.monotonic() - started < 20


def test_a_gap_or_trailing_bytes_in_the_data_are_refused(tmp_path):
    directory = checkpoint(tmp_path / "gap")
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes() + b"\0" * 4096)
    assert "no trailing bytes" in refused("convert", str(directory))

    def shift(header):
        for info in header.values():
            info["data_offsets"] = [o + 4 for o in info["data_offsets"]]

    tensors = llama_tensors()
    directory = checkpoint(tmp_path / "hole", tensors=tensors)
    write_safetensors(directory / "model.safetensors", tensors, shift)
    with open(directory / "model.safetensors", "ab") as handle:
        handle.write(b"\0" * 4)  # the data is 4 bytes longer: the hole is at its start
    assert "no holes" in refused("convert", str(directory))


@pytest.mark.parametrize("dropped", ["model.norm.weight", "model.layers.0.mlp.down_proj.weight"])
def test_a_checkpoint_missing_a_tensor_is_refused_before_anything_is_published(
    tmp_path, isolated_home, dropped
):
    config = dict(CONFIG, num_hidden_layers=2)
    tensors = llama_tensors(config)
    tensors.update({k.replace("layers.0.", "layers.1."): v for k, v in tensors.items() if "layers.0." in k})
    del tensors[dropped]
    checkpoint(tmp_path, config, tensors)
    line = refused("convert", str(tmp_path))
    gguf_name = "output_norm.weight" if dropped == "model.norm.weight" else "blk.0.ffn_down.weight"
    assert "lacks tensors llama.cpp needs" in line and gguf_name in line
    assert Store().entries() == [] and not (isolated_home / "models" / tmp_path.name).exists()


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, isolated_home):
    tensors = llama_tensors()
    tensors["model.layers.0.mlp.up_proj.weight"][3, 5] = np.nan
    checkpoint(tmp_path, tensors=tensors)
    line = refused("convert", str(tmp_path))
    assert "model.layers.0.mlp.up_proj.weight" in line and "1 NaN or infinite" in line
    assert Store().entries() == []


@pytest.mark.parametrize(
    "added",
    [[{"id": -5, "content": "<evil>"}], [{"id": "3", "content": "x"}], [{"id": True, "content": "x"}]],
)
def test_token_ids_out_of_range_are_refused(tmp_path, added):
    directory = checkpoint(tmp_path)
    (directory / "tokenizer.json").write_text(json.dumps(dict(TOKENIZER, added_tokens=added)))
    assert "token ids that are not ids" in refused("convert", str(directory))


def test_a_fifo_named_like_weights_is_refused_not_waited_on(tmp_path):
    directory = checkpoint(tmp_path)
    (directory / "model.safetensors").unlink()
    os.mkfifo(directory / "model.safetensors")
    started = time.monotonic()
    assert "not a regular file" in refused("convert", str(directory))
    assert time.monotonic() - started < 20


# -- qwen3: a field it needs, the per-head q/k norms, options its llama.cpp graph lacks ----------------

QWEN3_CONFIG = dict(CONFIG, model_type="qwen3", head_dim=16)  # head_dim is not hidden_size / heads (8)


def qwen3_tensors(config=QWEN3_CONFIG) -> dict[str, np.ndarray]:
    h, d = config["hidden_size"], config["head_dim"]
    q, kv = config["num_attention_heads"] * d, config["num_key_value_heads"] * d
    tensors = llama_tensors(config)
    p = "model.layers.0."
    shapes = {
        p + "self_attn.q_proj.weight": (q, h),
        p + "self_attn.k_proj.weight": (kv, h),
        p + "self_attn.v_proj.weight": (kv, h),
        p + "self_attn.o_proj.weight": (h, q),
        p + "self_attn.q_norm.weight": (d,),
        p + "self_attn.k_norm.weight": (d,),
    }
    tensors.update({name: np.full(shape, 0.01, np.float32) for name, shape in shapes.items()})
    return tensors


def test_a_qwen3_checkpoint_of_the_right_shape_converts(tmp_path):
    directory = checkpoint(tmp_path / "ckpt", QWEN3_CONFIG, qwen3_tensors())
    convert_directory(directory, tmp_path / "out.gguf", "f32")
    assert "qwen3" in FAMILIES


def test_a_qwen3_config_without_head_dim_is_one_line(tmp_path):
    config = {k: v for k, v in QWEN3_CONFIG.items() if k != "head_dim"}
    checkpoint(tmp_path, config, qwen3_tensors())
    line = refused("convert", str(tmp_path))
    assert "config.json lacks 'head_dim', which a qwen3 model needs" in line


def test_a_qwen3_q_norm_of_the_wrong_size_is_one_line(tmp_path):
    tensors = qwen3_tensors()
    tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(8, np.float32)  # hidden / heads, not 16
    checkpoint(tmp_path, QWEN3_CONFIG, tensors)
    line = refused("convert", str(tmp_path))
    assert "'model.layers.0.self_attn.q_norm.weight' has shape [8]; config.json implies [16]" in line


@pytest.mark.parametrize("key", ["use_sliding_window", "attention_bias"])
def test_qwen3_options_llama_cpp_lacks_are_one_line(tmp_path, key):
    checkpoint(tmp_path, dict(QWEN3_CONFIG, **{key: True}), qwen3_tensors())
    assert f"config.json sets {key}; llama.cpp's qwen3 arch has no such option" in refused(
        "convert", str(tmp_path)
    )


# -- smollm3: which layers skip RoPE must be said, and be the ones llama.cpp skips; llama3 RoPE scaling --

SMOLLM3_CONFIG = dict(CONFIG, model_type="smollm3", num_hidden_layers=4, no_rope_layer_interval=4)


def layered_tensors(config) -> dict[str, np.ndarray]:
    tensors = llama_tensors(config)
    for i in range(1, config["num_hidden_layers"]):
        tensors.update(
            {k.replace("layers.0.", f"layers.{i}."): v for k, v in tensors.items() if "layers.0." in k}
        )
    return tensors


def test_a_smollm3_checkpoint_of_the_right_shape_converts(tmp_path):
    config = dict(SMOLLM3_CONFIG, no_rope_layers=[1, 1, 1, 0])
    directory = checkpoint(tmp_path / "ckpt", config, layered_tensors(config))
    convert_directory(directory, tmp_path / "out.gguf", "f32")
    assert "smollm3" in FAMILIES


def test_a_smollm3_config_not_saying_which_layers_skip_rope_is_one_line(tmp_path):
    config = {k: v for k, v in SMOLLM3_CONFIG.items() if k != "no_rope_layer_interval"}
    checkpoint(tmp_path, config, layered_tensors(config))
    line = refused("convert", str(tmp_path))
    assert "config.json lacks 'no_rope_layers' and 'no_rope_layer_interval'" in line


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"no_rope_layers": [1, 0, 1, 1]}, "puts the layers without RoPE at [1]"),
        ({"no_rope_layer_interval": 2}, "puts the layers without RoPE at [1, 3]"),
        ({"no_rope_layers": [1, 1]}, "no_rope_layers has 2 entries for 4 layers"),
        ({"no_rope_layers": [1, 1, 1, "no"]}, "no_rope_layers must be a list of 0s and 1s"),
        ({"use_sliding_window": True}, "sets use_sliding_window; llama.cpp's smollm3 arch"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "RoPE scaling 'llama3' is not supported"),
    ],
)
def test_smollm3_configs_llama_cpp_cannot_run_are_one_line(tmp_path, patch, message):
    config = dict(SMOLLM3_CONFIG, **patch)
    checkpoint(tmp_path, config, layered_tensors(config))
    assert message in refused("convert", str(tmp_path))


def test_llama3_rope_scaling_with_unusable_numbers_is_one_line(tmp_path):
    rope = {"rope_type": "llama3", "factor": "32", "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    checkpoint(tmp_path / "text", dict(CONFIG, rope_scaling=rope))
    assert "llama3 RoPE factor is '32', not a number" in refused("convert", str(tmp_path / "text"))
    rope = dict(rope, factor=32.0, low_freq_factor=4.0)
    checkpoint(tmp_path / "equal", dict(CONFIG, rope_scaling=rope))
    assert "llama3 RoPE scaling" in refused("convert", str(tmp_path / "equal"))


# -- gemma3: the sliding-window layers' RoPE base, as either transformers version spells it ------------

GEMMA3_CONFIG = dict(CONFIG, model_type="gemma3_text", head_dim=8, sliding_window=16)


def gemma3_tensors(config=GEMMA3_CONFIG) -> dict[str, np.ndarray]:
    tensors = llama_tensors(config)
    h, d, p = config["hidden_size"], config["head_dim"], "model.layers.0."
    shapes = {
        p + "pre_feedforward_layernorm.weight": (h,),
        p + "post_feedforward_layernorm.weight": (h,),
        p + "self_attn.q_norm.weight": (d,),
        p + "self_attn.k_norm.weight": (d,),
    }
    tensors.update({name: np.full(shape, 0.01, np.float32) for name, shape in shapes.items()})
    return tensors


@pytest.mark.parametrize(
    "rope",
    [
        {
            "rope_parameters": {
                "full_attention": {"rope_theta": 1e6},
                "sliding_attention": {"rope_theta": 2e4},
            }
        },
        {"rope_theta": 1e6, "rope_local_base_freq": 2e4},
    ],
)
def test_gemma3_writes_the_local_rope_base(tmp_path, rope):
    directory = checkpoint(tmp_path / "ckpt", dict(GEMMA3_CONFIG, **rope), gemma3_tensors())
    meta = read_gguf(convert_directory(directory, tmp_path / "out.gguf", "f32")).metadata
    assert meta["gemma3.rope.freq_base"] == 1e6 and meta["gemma3.rope.freq_base_swa"] == 2e4
