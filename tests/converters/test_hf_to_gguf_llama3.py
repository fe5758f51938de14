"""The Llama 3 tokenizer's families end to end, on tiny random checkpoints: a Llama-3.2-shaped llama (llama3
RoPE scaling as a rope_freqs tensor, llama-bpe, BOS, tied embeddings) and SmolLM3 (no RoPE in every
fourth layer). Our F32 GGUF through llama.cpp against transformers on the same token ids, the tokenizer
on varied texts, and F16 and Q8_0 from the CLI through ondevice's runtime.

llama.cpp runs with an F32 KV cache here so the comparison measures the conversion, not the cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gguf import GGUFReader

from ondevice.cli import cli
from ondevice.converters.hf_to_gguf import convert_directory
from ondevice.converters.hf_to_gguf.llama import llama3_rope_factors
from ondevice.gguf_file import read_gguf
from ondevice.kinds import Kind
from ondevice.runtime.engine import WorkerModel, single_turn
from ondevice.runtime.protocol import GenerationParams, LoadOptions
from tests.support.convert import (
    assert_same_token_ids,
    varied_text_logit_diff,
)
from tests.support.llama3 import BEGIN_OF_TEXT, LLAMA3_ROPE, build_tiny_llama32, build_tiny_smollm3

pytest.importorskip("transformers")

# Bounds held on VARIED_TEXT (430 tokens, logits up to ~15); measured max |diff|: tiny Llama 3.2 1.7e-4,
# tiny SmolLM3 2.9e-4. Without the rope_freqs tensor the Llama 3.2 one is 19, with 409 top-1 misses.
MAX_ABS_LOGIT_DIFF = {"llama32": 0.005, "smollm3": 0.005}
KEYS = list(MAX_ABS_LOGIT_DIFF)
BUILDERS = {"llama32": build_tiny_llama32, "smollm3": build_tiny_smollm3}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    return {key: build(tmp_path_factory.mktemp(f"tiny-{key}")) for key, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def f32_ggufs(checkpoints, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("f32")
    return {key: convert_directory(path, out / f"{key}.gguf", "f32") for key, path in checkpoints.items()}


@pytest.mark.parametrize("key", KEYS)
def test_f32_logits_match_transformers(key, checkpoints, f32_ggufs):
    diff = varied_text_logit_diff(checkpoints[key], f32_ggufs[key])
    assert diff < MAX_ABS_LOGIT_DIFF[key], diff


@pytest.mark.parametrize("key", KEYS)
def test_tokenizer_ids_match_transformers(key, checkpoints, f32_ggufs):
    assert_same_token_ids(checkpoints[key], f32_ggufs[key])


def test_llama32_metadata_bos_and_rope_freqs(checkpoints, f32_ggufs):
    summary = read_gguf(f32_ggufs["llama32"])
    meta = summary.metadata
    assert meta["general.architecture"] == "llama" and meta["tokenizer.ggml.pre"] == "llama-bpe"
    reader = GGUFReader(f32_ggufs["llama32"])
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[meta["tokenizer.ggml.bos_token_id"]] == BEGIN_OF_TEXT
    assert meta["tokenizer.ggml.add_bos_token"] is True
    assert "llama.rope.scaling.type" not in meta  # llama.cpp reads llama3 scaling from rope_freqs alone
    assert meta["llama.rope.freq_base"] == LLAMA3_ROPE["rope_theta"]
    names = {t.name for t in summary.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    # The factors equal transformers' own llama3 frequencies: default inv_freq / scaled inv_freq.
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    factors = _rope_freqs(f32_ggufs["llama32"])
    config = AutoConfig.from_pretrained(checkpoints["llama32"])
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    dim = config.head_dim
    default = 1.0 / LLAMA3_ROPE["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    np.testing.assert_allclose(factors, default / scaled.double().numpy(), rtol=1e-5)
    # Every kind of factor is in play: kept (1), stretched (factor) and blended between.
    assert factors.min() == 1.0 and factors.max() == LLAMA3_ROPE["factor"]
    assert ((factors > 1) & (factors < LLAMA3_ROPE["factor"])).any()


def _rope_freqs(path: Path) -> np.ndarray:
    return next(np.array(t.data) for t in GGUFReader(path).tensors if t.name == "rope_freqs.weight")


def test_smollm3_metadata_and_tensors(f32_ggufs):
    summary = read_gguf(f32_ggufs["smollm3"])
    meta = summary.metadata
    assert meta["general.architecture"] == "smollm3" and meta["tokenizer.ggml.pre"] == "llama-bpe"
    assert meta["smollm3.block_count"] == 4 and meta["smollm3.rope.dimension_count"] == 16
    # Its tokenizer adds no BOS; llama.cpp would add one for llama-bpe unless told not to.
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    names = {t.name for t in summary.tensors}
    assert "output.weight" not in names and "rope_freqs.weight" not in names
    assert {f"blk.{i}.attn_q.weight" for i in range(4)} <= names


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
@pytest.mark.parametrize("key", KEYS)
def test_cli_outputs_load_and_generate(key, outtype, checkpoints, isolated_home):
    result = CliRunner().invoke(
        cli, ["convert", str(checkpoints[key]), "--outtype", outtype, "--name", key, "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    path = Path(info["path"])
    assert path.is_relative_to(isolated_home) and info["outtype"] == outtype
    assert read_gguf(path).file_type_name == outtype.upper()
    with WorkerModel(path, LoadOptions(n_ctx=256)) as worker:
        # A random model may well pick an end-of-generation token first: it is ignored, so that the
        # test sees eight decode steps rather than chance.
        params = GenerationParams(max_tokens=8, temperature=0, ignore_eos=True)
        finished = worker.generate(single_turn(Kind.BASE, False, "Once upon a time", params))
        assert finished.stats.generated_tokens == 8


def test_llama3_config_in_transformers_4_form_gives_the_same_gguf_rope(checkpoints, f32_ggufs, tmp_path):
    """Hub Llama 3.x configs spell it `rope_scaling` with a flat `rope_theta` (transformers 4)."""
    directory = tmp_path / "llama32-v4-config"
    shutil.copytree(checkpoints["llama32"], directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = rope
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    ours = convert_directory(directory, tmp_path / "v4.gguf", "f32")
    assert read_gguf(ours).metadata["llama.rope.freq_base"] == LLAMA3_ROPE["rope_theta"]
    np.testing.assert_array_equal(_rope_freqs(ours), _rope_freqs(f32_ggufs["llama32"]))


def _llama_cpp_converter_factors(rope: dict, dim: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py (LlamaModel.generate_extra_tensors), transcribed: torch float32."""
    import math

    import torch

    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32).numpy()


@pytest.mark.parametrize(
    ("head_dim", "factor"),
    [(128, 8.0), (64, 32.0), (128, 32.0)],
    ids=["llama-3.1-8b", "llama-3.2-1b", "llama-3.2-3b"],
)
def test_llama3_rope_factors_equal_llama_cpp_converters_bit_for_bit(head_dim, factor):
    rope = {
        "rope_theta": 500000.0,
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    ours = llama3_rope_factors(rope, head_dim, rope["rope_theta"])
    reference = _llama_cpp_converter_factors(rope, head_dim)
    assert ours.dtype == np.float32 and ours.tobytes() == reference.tobytes()
    assert ((ours > 1) & (ours < factor)).any()  # the blended band, where rounding could differ
