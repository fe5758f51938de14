"""A tiny random Llama checkpoint written directly (numpy, no torch): the files a Hub repo would serve.

BF16 weights in safetensors (optionally sharded with an index), config.json, generation_config.json,
a byte-level BPE tokenizer.json, and for the instruct flavour a chat template in tokenizer_config.json.
Deterministic for a given seed, about 250 KB, so a test can serve it over HTTP in milliseconds.
"""

from __future__ import annotations

import json
import struct

import numpy as np

HIDDEN = 64
FFN = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_chars() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    )
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tokenizer_json() -> dict:
    vocab = {c: i for i, c in enumerate(_byte_chars())}
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    added = [
        {
            "id": len(vocab) + i,
            "content": text,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, text in enumerate(SPECIALS)
    ]
    return {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in MERGES],
        },
    }


N_TOKENS = 256 + len(MERGES) + len(SPECIALS)
VOCAB = 320  # more rows than tokens, as real checkpoints pad theirs


def config(name: str) -> dict:
    return {
        "_name_or_path": name,
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": VOCAB,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": 256 + len(MERGES),
        "torch_dtype": "bfloat16",
    }


def tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (HIDDEN,),
            p + "post_attention_layernorm.weight": (HIDDEN,),
            p + "self_attn.q_proj.weight": (HEADS * head_dim, HIDDEN),
            p + "self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            p + "self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            p + "self_attn.o_proj.weight": (HIDDEN, HEADS * head_dim),
            p + "mlp.gate_proj.weight": (FFN, HIDDEN),
            p + "mlp.up_proj.weight": (FFN, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, FFN),
        }
    shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return {
        name: (
            np.ones(shape, np.float32) if len(shape) == 1 else rng.normal(0, 0.2, shape).astype(np.float32)
        )
        for name, shape in shapes.items()
    }


def safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """One safetensors file holding `arrays` as BF16 (float32 rounded toward zero to its top half)."""
    header, blobs, offset = {}, [], 0
    for name, array in arrays.items():
        data = (np.ascontiguousarray(array, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def checkpoint_files(name: str, *, instruct: bool, shards: int = 1, seed: int = 0) -> dict[str, bytes]:
    """File name -> content of a tiny Llama checkpoint repo."""
    arrays = tensors(seed)
    files: dict[str, bytes] = {}
    if shards == 1:
        files["model.safetensors"] = safetensors_bytes(arrays)
    else:
        names = list(arrays)
        groups = [names[i::shards] for i in range(shards)]
        weight_map = {}
        for i, group in enumerate(groups, start=1):
            shard = f"model-{i:05d}-of-{shards:05d}.safetensors"
            files[shard] = safetensors_bytes({n: arrays[n] for n in group})
            weight_map |= {n: shard for n in group}
        total = sum(len(v) for v in files.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    files["config.json"] = json.dumps(config(name), indent=2).encode()
    files["generation_config.json"] = json.dumps({"eos_token_id": config(name)["eos_token_id"]}).encode()
    files["tokenizer.json"] = json.dumps(tokenizer_json()).encode()
    tokenizer_config = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 256}
    if instruct:
        tokenizer_config |= {"eos_token": "<|im_end|>", "chat_template": CHAT_TEMPLATE}
    files["tokenizer_config.json"] = json.dumps(tokenizer_config).encode()
    files["README.md"] = f"# {name}\n\nA tiny random Llama for tests.\n".encode()
    return files
