"""HF -> GGUF conversion checked by logits: our F32 GGUF through llama.cpp against transformers on the
same checkpoint and token ids, for SmolLM2 (llama), Gemma 3 270M (gemma3) and tiny random Qwen2 and Qwen3.

llama.cpp runs with an F32 KV cache here so the comparison measures the conversion, not the cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ondevice.cli import cli
from ondevice.converters.hf_to_gguf import convert_directory
from ondevice.gguf_file import read_gguf
from ondevice.kinds import Kind
from ondevice.prompting import Message
from ondevice.runtime.engine import WorkerModel, chat_turn, single_turn
from ondevice.runtime.protocol import GenerationParams, LoadOptions
from tests.support.checkpoints import rebuild
from tests.support.convert import (
    TOKENIZER_TEXTS,
    assert_same_token_ids,
    build_tiny_qwen2,
    build_tiny_qwen3,
    llama_ids,
    transformers_ids,
    varied_text_logit_diff,
)

pytest.importorskip("transformers")
pytestmark = pytest.mark.models

# Bounds held on VARIED_TEXT (300-430 tokens); measured max |diff|: SmolLM2 1.4e-4, Gemma 3 0.029
# (logits up to ~30), tiny Qwen2 2.2e-4, tiny Qwen3 7.3e-5 (logits up to ~17).
MAX_ABS_LOGIT_DIFF = {"smol": 0.005, "gemma": 0.05, "qwen2": 0.005, "qwen3": 0.005}
KEYS = list(MAX_ABS_LOGIT_DIFF)


class _Lazy(dict):
    """A session's checkpoints or conversions, each made the first time a test asks for it, so that
    `-k qwen3` does not rebuild and convert Gemma."""

    def __init__(self, make) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: str) -> Path:
        self[key] = value = self._make(key)
        return value


@pytest.fixture(scope="session")
def smol_checkpoint(smol) -> Path:
    return rebuild(smol.path, smol.manifest.sha256, "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma_checkpoint(gemma) -> Path:
    return rebuild(gemma.path, gemma.manifest.sha256, "gemma-3-270m")


@pytest.fixture(scope="session")
def qwen2_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def qwen3_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def checkpoints(request) -> dict[str, Path]:
    return _Lazy(lambda key: request.getfixturevalue(f"{key}_checkpoint"))


@pytest.fixture(scope="session")
def f32_ggufs(checkpoints, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("f32")
    return _Lazy(lambda key: convert_directory(checkpoints[key], out / f"{key}.gguf", "f32"))


@pytest.mark.parametrize("key", KEYS)
def test_f32_logits_match_transformers(key, checkpoints, f32_ggufs):
    diff = varied_text_logit_diff(checkpoints[key], f32_ggufs[key])
    assert diff < MAX_ABS_LOGIT_DIFF[key], diff


@pytest.mark.parametrize("key", KEYS)
def test_tokenizer_round_trip_matches_transformers(key, checkpoints, f32_ggufs):
    assert_same_token_ids(checkpoints[key], f32_ggufs[key])


def test_metadata_carries_tokenizer_specials_and_template(f32_ggufs):
    smol = read_gguf(f32_ggufs["smol"]).metadata
    assert smol["general.architecture"] == "llama" and smol["general.file_type"] == 0
    assert smol["tokenizer.ggml.model"] == "gpt2" and smol["tokenizer.ggml.pre"] == "gpt-2"
    assert smol["tokenizer.ggml.bos_token_id"] == 1 and smol["tokenizer.ggml.eos_token_id"] == 2
    assert "<|im_start|>" in smol["tokenizer.chat_template"]
    gemma = read_gguf(f32_ggufs["gemma"]).metadata
    assert gemma["tokenizer.ggml.model"] == "llama" and gemma["tokenizer.ggml.add_bos_token"] is True
    assert gemma["gemma3.attention.sliding_window"] == 512 and gemma["gemma3.attention.key_length"] == 256
    assert gemma["gemma3.rope.freq_base"] == 1e6 and gemma["gemma3.rope.freq_base_swa"] == 1e4
    qwen = read_gguf(f32_ggufs["qwen2"])
    assert qwen.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert {"blk.0.attn_q.bias", "blk.1.attn_v.bias"} <= {t.name for t in qwen.tensors}
    assert "output.weight" not in {t.name for t in qwen.tensors}  # tied: llama.cpp reuses token_embd


def test_qwen3_metadata_and_tensors(f32_ggufs):
    summary = read_gguf(f32_ggufs["qwen3"])
    meta = summary.metadata
    assert meta["general.architecture"] == "qwen3" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["qwen3.attention.key_length"] == 32 and meta["qwen3.attention.value_length"] == 32
    assert meta["qwen3.attention.head_count"] == 4 and meta["qwen3.attention.head_count_kv"] == 2
    shapes = {t.name: tuple(t.shape) for t in summary.tensors}
    assert shapes["blk.1.attn_q_norm.weight"] == shapes["blk.1.attn_k_norm.weight"] == (32,)
    assert "output.weight" in shapes  # untied
    assert not any(name.endswith(".bias") for name in shapes)


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_qwen3_outputs_load_and_generate(outtype, qwen3_checkpoint, isolated_home):
    result = CliRunner().invoke(
        cli, ["convert", str(qwen3_checkpoint), "--outtype", outtype, "--name", "qwen3", "--json"]
    )
    assert result.exit_code == 0, result.output
    path = Path(json.loads(result.stdout)["path"])
    assert read_gguf(path).file_type_name == outtype.upper()
    with WorkerModel(path, LoadOptions(n_ctx=256)) as worker:
        params = GenerationParams(max_tokens=8, temperature=0)
        finished = worker.generate(single_turn(Kind.BASE, False, "Once upon a time", params))
        assert finished.stats.generated_tokens > 0


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_cli_outputs_load_and_generate(outtype, smol_checkpoint, gemma_checkpoint, isolated_home):
    runner = CliRunner()
    for name, directory in (("smol", smol_checkpoint), ("gemma", gemma_checkpoint)):
        result = runner.invoke(
            cli, ["convert", str(directory), "--outtype", outtype, "--name", name, "--json"]
        )
        assert result.exit_code == 0, result.output
        info = json.loads(result.stdout)
        path = Path(info["path"])
        assert path.is_relative_to(isolated_home) and info["outtype"] == outtype
        summary = read_gguf(path)
        assert summary.file_type_name == outtype.upper()
        if outtype == "q8_0":
            assert 8.4 < info["bits_per_weight"] < 9
        with WorkerModel(path, LoadOptions(n_ctx=512)) as worker:
            if name == "smol":
                messages = [
                    Message("system", "Answer the question."),
                    Message("user", "What is the capital of France?"),
                ]
                finished = worker.generate(
                    chat_turn(True, messages, GenerationParams(max_tokens=16, temperature=0))
                )
                assert "Paris" in finished.text
            else:
                params = GenerationParams(max_tokens=16, temperature=0)
                finished = worker.generate(single_turn(Kind.BASE, False, "The capital of France is", params))
                assert finished.stats.generated_tokens > 0 and finished.text.strip()


def test_smollm2s_own_pre_tokenizer_splits_digits_like_transformers(smol_checkpoint, tmp_path):
    """The Hub's SmolLM2 tokenizer.json splits digits one by one before byte-level BPE (the checkpoint
    rebuilt from the GGUF lost that step). With it restored, the GGUF says "smollm" and llama.cpp's
    token ids still equal transformers'."""
    directory = tmp_path / "smollm2-digits"
    shutil.copytree(smol_checkpoint, directory)
    tokenizer_json = directory / "tokenizer.json"
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    tokenizer_json.write_text(json.dumps(data), encoding="utf-8")
    gguf_path = convert_directory(directory, tmp_path / "smollm2-digits.gguf", "q8_0")
    assert read_gguf(gguf_path).metadata["tokenizer.ggml.pre"] == "smollm"
    texts = [*TOKENIZER_TEXTS, "12345 × 678 = 8369910, pi is 3.14159 and 2024-11-29"]
    ours = llama_ids(gguf_path, texts)
    for text, got in zip(texts, ours, strict=True):
        assert got == transformers_ids(directory, text), text
    digits = transformers_ids(directory, "12345", add_special_tokens=False)
    assert len(digits) == 5  # one token per digit
