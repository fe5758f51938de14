"""Tiny checkpoints of the Llama 3 tokenizer's shape: a Llama-3.2-shaped llama (llama3 RoPE scaling, tied
embeddings) and a SmolLM3 (NoPE every fourth layer), each with a small byte-level BPE trained with
Llama 3's split regex."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.convert import CHATML_TEMPLATE, trained_byte_level_bpe

LLAMA3_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
BEGIN_OF_TEXT = "<|begin_of_text|>"
LLAMA3_SPECIALS = [BEGIN_OF_TEXT, "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHATML_SPECIALS = ["<|im_start|>", "<|im_end|>"]

# Llama 3.2's RoPE scaling, with the original context cut from 8192 to 64 so that, at this head_dim (16)
# and theta, one frequency keeps its wavelength, one is blended and six are stretched 32 times: every
# kind of factor is in play within the test's few hundred positions.
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}

TINY_LLAMA3: dict[str, Any] = {
    "vocab_size": 640,  # more rows than tokens, as real checkpoints pad theirs
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "initializer_range": 0.4,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}


def llama3_tokenizer(bos: bool = True, chatml: bool = False):
    """A small byte-level BPE trained on the varied text, set up as Llama 3's own is (its split regex,
    ByteLevel without its own regex, ignore_merges, `<|begin_of_text|>` prepended by the post-processor
    when `bos`). `chatml` adds the ChatML specials and template SmolLM3 uses."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    specials = LLAMA3_SPECIALS + (CHATML_SPECIALS if chatml else [])
    tokenizer = trained_byte_level_bpe(LLAMA3_SPLIT, specials, ignore_merges=True)
    if bos:
        bos_id = tokenizer.token_to_id(BEGIN_OF_TEXT)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BEGIN_OF_TEXT}:0 $A:0",
            pair=f"{BEGIN_OF_TEXT}:0 $A:0 {BEGIN_OF_TEXT}:1 $B:1",
            special_tokens=[(BEGIN_OF_TEXT, bos_id)],
        )
    eos = "<|im_end|>" if chatml else "<|eot_id|>"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BEGIN_OF_TEXT if bos else None, eos_token=eos
    )
    if chatml:
        fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_llama32(out: Path) -> Path:
    """A randomly initialised Llama-3.2-shaped llama: llama3 RoPE scaling, tied embeddings, head_dim
    stated, bf16 in several shards, with the Llama-3-shaped tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = llama3_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        **TINY_LLAMA3,
        num_hidden_layers=2,
        head_dim=16,
        rope_parameters=dict(LLAMA3_ROPE),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, max_shard_size="200KB")
    fast.save_pretrained(out)
    return out


def build_tiny_smollm3(out: Path) -> Path:
    """A randomly initialised SmolLM3: four layers, so layer 3 has no RoPE, tied embeddings,
    bf16 in several shards, with the Llama-3-shaped tokenizer plus ChatML and no BOS."""
    import torch
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    fast = llama3_tokenizer(bos=False, chatml=True)
    torch.manual_seed(0)
    config = SmolLM3Config(
        **TINY_LLAMA3,
        num_hidden_layers=4,
        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0},
        bos_token_id=None,
        eos_token_id=fast.eos_token_id,
        pad_token_id=None,
    )
    model = SmolLM3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, max_shard_size="200KB")
    fast.save_pretrained(out)
    return out
