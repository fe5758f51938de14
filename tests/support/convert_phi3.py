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


# Phi-3.5-mini's shape: no grouped-query attention, every dimension rotated, untied embeddings, a
# sliding window far past any context, and a Llama-style SentencePiece BPE.
TINY_PHI35_MINI = {
    **TINY_PHI4_MINI,
    "vocab_size": 704,  # 256 byte tokens and 400 learned ones, then the chat specials and padding
    "num_key_value_heads": 4,
    "sliding_window": 262144,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}
PHI35_SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]


def _sentencepiece_bpe_tokenizer():
    """A small BPE with byte fallback, set up as Phi-3.5-mini's (Llama 2's) tokenizer.json is: spaces
    become ▁ with one prepended, no pre-tokenizer, <unk> <s> </s> then the 256 byte tokens first, Phi's
    chat specials added after the vocabulary, <s> added in front. The alphabet is cut short so that rare
    characters (the CJK, the emoji) fall back to bytes."""
    import json as _json

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    trainer_model = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_model.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=80)
    trainer_model.train_from_iterator(TOKENIZER_TEXTS * 4, trainer)
    trained = _json.loads(trainer_model.to_str())["model"]
    learned = sorted(trained["vocab"], key=trained["vocab"].get)[3:]  # after the three specials
    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *learned]
    tokenizer = Tokenizer(
        models.BPE(
            vocab={piece: i for i, piece in enumerate(pieces)},
            merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]],
            unk_token="<unk>",
            byte_fallback=True,
            fuse_unk=True,
        )
    )
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 1)]
    )
    tokenizer.add_special_tokens(PHI35_SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    return fast


def build_tiny_phi35_mini(out: Path) -> Path:
    """A randomly initialised Phi3ForCausalLM of Phi-3.5-mini's shape, bf16, in several shards."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    fast = _sentencepiece_bpe_tokenizer()
    torch.manual_seed(1)
    full = dict(rope_parameters(), partial_rotary_factor=1.0)
    pairs = TINY_PHI35_MINI["hidden_size"] // TINY_PHI35_MINI["num_attention_heads"] // 2
    full["short_factor"] = np.round(np.linspace(1.0, 1.3, pairs), 4).tolist()
    full["long_factor"] = np.round(np.geomspace(1.0, 40.0, pairs), 4).tolist()
    config = Phi3Config(**TINY_PHI35_MINI, rope_parameters=full)
    model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, max_shard_size="200KB")
    fast.save_pretrained(out)
    return out
