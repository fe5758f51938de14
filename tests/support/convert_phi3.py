"""Tiny phi3 checkpoints for the converter tests. One of Phi-4-mini's shape: LongRoPE with short and
long factors, partial rotary, tied embeddings, grouped-query attention, fused qkv and gate_up weights,
and a small byte-level BPE with GPT-4o's split (the o200k regex), as its tokenizer.json has. One of
Phi-3.5-mini's: every dimension rotated, untied, a Llama-style SentencePiece BPE with byte fallback.

The BPE merges are learned here rather than by the tokenizers library's trainer, which breaks ties
between equally frequent pairs in hash order: its vocabulary, and so the token ids the models see,
would change from run to run, and with them which positions are near-ties in the logits.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
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


def learn_merges(words: Iterable[str], count: int, alphabet: set[str]) -> list[tuple[str, str]]:
    """`count` BPE merges over `words` (pre-tokenized), most frequent pair first, ties broken by the
    pair's text, so that every run learns the same ones. Characters outside `alphabet` never merge."""
    spelled: Counter[tuple[str, ...]] = Counter(tuple(word) for word in words)
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, n in spelled.items():
            for pair in pairwise(symbols):
                if pair[0][0] in alphabet and pair[1][0] in alphabet:  # merged symbols hold only those
                    pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, n in spelled.items():
            out, i = [], 0
            while i < len(symbols):
                if symbols[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += n
        spelled = merged
    return merges


def _gpt4o_tokenizer():
    """A small byte-level BPE learned from the test texts, set up as Phi-4-mini's is (the GPT-4o split,
    ByteLevel without its own regex, Phi's chat specials and template)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4O_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = [word for text in TOKENIZER_TEXTS for word, _ in split.pre_tokenize_str(text)]
    merges = learn_merges(words, 340, set(alphabet))
    pieces = [*specials, *alphabet, *(a + b for a, b in merges)]
    tokenizer = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=merges))
    tokenizer.pre_tokenizer = split
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
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
    # As Phi-4-mini's says: llama.cpp's converter reads the vocabulary as GPT-2's only when told so
    # (transformers 5 reads tokenizer.json either way).
    path = out / "tokenizer_config.json"
    settings = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**settings, "tokenizer_class": "GPT2Tokenizer"}), encoding="utf-8")
    return out


# Phi-3.5-mini's shape: no grouped-query attention, every dimension rotated, untied embeddings, a
# sliding window far past any context, and a Llama-style SentencePiece BPE.
TINY_PHI35_MINI = {
    **TINY_PHI4_MINI,
    "vocab_size": 704,  # <unk> <s> </s>, 256 bytes, 75 characters, 340 merges, 5 chat specials, padding
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
    chat specials added after the vocabulary, <s> added in front. Its alphabet is the characters seen
    at least twice, so that rare ones (some CJK, the emoji) fall back to bytes."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Merges are learned inside ▁-led words, as SentencePiece does; the tokenizer itself splits nothing.
    words_of = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    words = [
        word
        for text in TOKENIZER_TEXTS
        for word, _ in words_of.pre_tokenize_str(normalizer.normalize_str(text))
    ]
    seen = Counter(char for word in words for char in word)
    alphabet = sorted(char for char, n in seen.items() if n >= 2)
    merges = learn_merges(words, 340, set(alphabet))
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    pieces = ["<unk>", "<s>", "</s>", *bytes_, *alphabet, *(a + b for a, b in merges)]
    tokenizer = Tokenizer(
        models.BPE(
            vocab={piece: i for i, piece in enumerate(pieces)},
            merges=merges,
            unk_token="<unk>",
            byte_fallback=True,
            fuse_unk=True,
        )
    )
    tokenizer.normalizer = normalizer
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 1)]
    )
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>", *PHI35_SPECIALS])
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
