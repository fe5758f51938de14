"""Shared pieces of the converter tests: a varied text, logits from both sides, tiny Qwen2 and Qwen3
checkpoints."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

# Prose, code, numbers, unicode and whitespace runs: a few hundred tokens that exercise the tokenizer
# and the model on more than one kind of text.
VARIED_TEXT = (
    "The sky looks blue because air molecules scatter short wavelengths of sunlight more strongly than "
    "long ones; at sunset the light crosses more air, so the reds and oranges are what remain.\n\n"
    "def fibonacci(n: int) -> list[int]:\n"
    "    values = [0, 1]\n"
    "    while len(values) < n:\n"
    "        values.append(values[-1] + values[-2])\n"
    "    return values[:n]\n\n"
    "Prices rose 3.75% in 2023, from $1,299.99 to $1,348.74; 12345 × 678 = 8369910 and 0x1F is 31.\n"
    "Café, naïve, façade, Zürich, São Paulo, Kraków; 東京は日本の首都です。Привет, мир! 🚀🌍✨\n"
    "Whitespace runs:    four spaces,\t\ttwo tabs,\n\n\nthree newlines, and trailing spaces   \n"
    "SELECT name, COUNT(*) FROM users WHERE age >= 21 GROUP BY name ORDER BY 2 DESC;\n"
    'JSON: {"id": 42, "tags": ["a", "b"], "ok": true, "ratio": -0.5e-3}\n'
    "Once upon a time, in a quiet village by the sea, an old clockmaker repaired the town's only tower "
    "clock every spring, and the children gathered to watch the gears turn."
)

TOKENIZER_TEXTS = [
    VARIED_TEXT,
    "Hello world",
    " leading space and  double  spaces",
    "numbers: 1 22 333 4444 55555 666666 3.14159 -42 1e10",
    "emoji 👩‍💻 and CJK 漢字かなカナ 한국어 and accents àéîõü",
    "    indented code\n\tif x:\n\t\treturn {'a': [1, 2, 3]}\n",
    "mixedCase_snake_case kebab-case CONSTANT_CASE it's they're we'll I'd",
]


def transformers_logits(directory: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


@functools.lru_cache(maxsize=4)
def _tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def transformers_ids(directory: Path, text: str, add_special_tokens: bool = True) -> list[int]:
    return list(_tokenizer(directory)(text, add_special_tokens=add_special_tokens)["input_ids"])


def llama_logits(gguf: Path, ids: list[int], n_ctx: int | None = None) -> np.ndarray:
    """llama.cpp's logits at every position; `n_ctx` when the context size matters (LongRoPE)."""
    import llama_cpp

    # An F32 KV cache: the default F16 one would add its own rounding to what is being measured.
    n_ctx = n_ctx or max(512, len(ids) + 8)
    llm = llama_cpp.Llama(str(gguf), n_ctx=n_ctx, logits_all=True, verbose=False, type_k=0, type_v=0)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def llama_ids(gguf: Path, texts: list[str]) -> list[list[int]]:
    """Token ids as llama.cpp makes them from our GGUF (with its own add_bos decision)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=64, vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=True, special=False) for t in texts]
    finally:
        llm.close()


QWEN2_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def trained_byte_level_bpe(split_regex: str, specials: list[str], ignore_merges: bool = False):
    """A small byte-level BPE (a `tokenizers.Tokenizer`) trained on the tokenizer texts, splitting as
    `split_regex` does, then ByteLevel without its own regex: how Qwen2/3 and Llama 3 set theirs up."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TOKENIZER_TEXTS * 4, trainer)
    return tokenizer


def _qwen_tokenizer():
    """A small byte-level BPE trained on the varied text, set up the way Qwen2's and Qwen3's own are
    (the same split regex, ByteLevel without its own regex, ChatML specials and template)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = trained_byte_level_bpe(QWEN2_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


# The shape both tiny Qwen checkpoints share.
TINY_QWEN: dict[str, Any] = {
    "vocab_size": 640,  # more rows than tokens, as real checkpoints pad theirs
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "initializer_range": 0.4,
    "rms_norm_eps": 1e-6,
    "bos_token_id": None,
    "eos_token_id": 0,
}


def build_tiny_qwen2(out: Path) -> Path:
    """A randomly initialised Qwen2 (biases, tied embeddings), bf16, in several shards, with a small
    byte-level BPE tokenizer trained on the varied text, the way Qwen2's own is set up."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    fast = _qwen_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(**TINY_QWEN, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():  # random biases, so a dropped or misplaced bias shows in the logits
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    model.save_pretrained(out, max_shard_size="200KB")
    fast.save_pretrained(out)
    return out


def build_tiny_qwen3(out: Path) -> Path:
    """A randomly initialised Qwen3, bf16, in several shards, with the Qwen-shaped tokenizer. Its
    head_dim (32) is not hidden_size / heads (16), as in the real ones, the embeddings are untied (as
    in Qwen3-8B and up), and the q/k norm weights are random, so a dropped, swapped or misplaced norm
    shows in the logits."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    fast = _qwen_tokenizer()
    torch.manual_seed(0)
    config = Qwen3Config(**TINY_QWEN, head_dim=32, tie_word_embeddings=False)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.normal_(1, 0.5)
            layer.self_attn.k_norm.weight.normal_(1, 0.5)
    model.save_pretrained(out, max_shard_size="200KB")
    fast.save_pretrained(out)
    return out


def top1_then_max_diff(ours: np.ndarray, reference: np.ndarray) -> float:
    """The max |diff| of two logit arrays, once the top-1 token is the same at every position."""
    assert ours.shape == reference.shape
    mismatched = np.flatnonzero(ours.argmax(-1) != reference.argmax(-1))
    if mismatched.size:
        # A near-tie in transformers' own top two is the one place rounding alone could flip the top-1.
        top2 = np.sort(reference[mismatched], -1)[:, -2:]
        margins = (top2[:, 1] - top2[:, 0]).round(5).tolist()
        raise AssertionError(f"top-1 differs at positions {mismatched.tolist()}; reference margins {margins}")
    return float(np.abs(ours - reference).max())


def varied_text_logit_diff(checkpoint: Path, gguf: Path) -> float:
    """transformers' and llama.cpp's F32 logits on the varied text (300 tokens or more): the max |diff|,
    once the top-1 token is the same at every position."""
    ids = transformers_ids(checkpoint, VARIED_TEXT)
    assert len(ids) >= 300
    return top1_then_max_diff(llama_logits(gguf, ids), transformers_logits(checkpoint, ids))


def assert_same_token_ids(checkpoint: Path, gguf: Path) -> None:
    """llama.cpp tokenizes every tokenizer text as transformers does."""
    ours = llama_ids(gguf, TOKENIZER_TEXTS)
    for text, got in zip(TOKENIZER_TEXTS, ours, strict=True):
        assert got == transformers_ids(checkpoint, text), text
