"""A tiny Phi-4-mini-shaped checkpoint for the converter tests: LongRoPE with short and long factors,
partial rotary, tied embeddings, grouped-query attention, fused qkv and gate_up weights, and a small
byte-level BPE with GPT-4o's split (the o200k regex), as Phi-4-mini's own tokenizer.json has."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.convert import TOKENIZER_TEXTS

# The split Phi-4-mini's tokenizer.json (and GPT-4o's o200k encoding) applies before byte-level BPE.
GPT4O_SPLIT = (
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)

# LongRoPE switches factors past this many positions, in transformers by sequence length and in
# llama.cpp by context size: below it both use the short factors, past it both use the long ones.
ORIGINAL_CONTEXT = 512

TINY_PHI4_MINI = {
    "vocab_size": 640,  # more rows than tokens, as Phi-4-mini pads 200029 tokens to 200064 rows
    "hidden_size": 128,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,  # head_dim 32
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,  # 8 x the original context: attention factor sqrt(1 + ln 8 / ln 512)
    "original_max_position_embeddings": ORIGINAL_CONTEXT,
    "sliding_window": 2048,  # present, as in Phi-4-mini's config, and longer than any test sequence
    "initializer_range": 0.3,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 0,
}
ROTARY_DIMS = 24  # partial_rotary_factor 0.75 of head_dim 32, as Phi-4-mini rotates 96 of 128


def rope_parameters() -> dict:
    """LongRoPE factors of Phi-4-mini's shape: short ones near 1, long ones rising to tens."""
    pairs = ROTARY_DIMS // 2
    return {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "partial_rotary_factor": ROTARY_DIMS / 32,
        "short_factor": np.round(np.linspace(1.0, 1.3, pairs), 4).tolist(),
        "long_factor": np.round(np.geomspace(1.0, 40.0, pairs), 4).tolist(),
    }


def _gpt4o_tokenizer():
    """A small byte-level BPE trained on the test texts, set up as Phi-4-mini's is (the GPT-4o split,
    ByteLevel without its own regex, Phi's chat specials and template)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4O_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TOKENIZER_TEXTS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return fast


def build_tiny_phi4_mini(out: Path) -> Path:
    """A randomly initialised Phi3ForCausalLM of Phi-4-mini's shape, bf16, in several shards."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    fast = _gpt4o_tokenizer()
    torch.manual_seed(0)
    config = Phi3Config(**TINY_PHI4_MINI, rope_parameters=rope_parameters())
    model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, max_shard_size="200KB")
    fast.save_pretrained(out)
    return out
