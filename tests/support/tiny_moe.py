"""A tiny mixture-of-experts model llama.cpp loads and runs: Mixtral's layout (llama architecture,
`ffn_*_exps` expert weights routed by `ffn_gate_inp`), random weights, another GGUF's tokenizer."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

N_EMBD, N_FF, N_LAYERS, N_HEAD = 64, 96, 2, 4
N_EXPERT, N_EXPERT_USED = 4, 2
_TOKENIZER_PREFIX = "tokenizer.ggml."


def write_tiny_moe(path: Path, tokenizer_from: Path, seed: int = 0) -> Path:
    """Write the model to `path`, with the tokenizer (vocabulary, merges, special ids) of the GGUF
    `tokenizer_from`. Numpy shapes are GGUF's ne reversed: an expert weight is (experts, rows, cols)."""
    source = gguf.GGUFReader(tokenizer_from)
    n_vocab = len(source.fields[_TOKENIZER_PREFIX + "tokens"].contents())
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return (rng.normal(size=shape) * 0.05).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny moe")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(512)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_block_count(N_LAYERS)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_expert_count(N_EXPERT)
    writer.add_expert_used_count(N_EXPERT_USED)
    writer.add_vocab_size(n_vocab)
    for key, field in source.fields.items():
        if key.startswith(_TOKENIZER_PREFIX):
            sub_type = field.types[1] if len(field.types) > 1 else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub_type)
    writer.add_tensor("token_embd.weight", normal(n_vocab, N_EMBD))
    for i in range(N_LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", normal(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate_inp.weight", normal(N_EXPERT, N_EMBD) * 20)
        writer.add_tensor(f"blk.{i}.ffn_gate_exps.weight", normal(N_EXPERT, N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up_exps.weight", normal(N_EXPERT, N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down_exps.weight", normal(N_EXPERT, N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
