"""The llama family: Llama 2/3, SmolLM/SmolLM2, Mistral (dense)."""

from __future__ import annotations

from typing import ClassVar

import gguf
import numpy as np

from .base import ConvertError, Family, Transform


def rope_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k rows from transformers' rotate-half RoPE layout to llama.cpp's interleaved pairs.

    transformers rotates dimension i with i + head_dim/2 inside each head; llama.cpp's llama graph
    rotates adjacent pairs (2i, 2i+1). Swapping the two half-axes of each head maps one onto the other.
    """
    rows = weight.shape[0]
    head_dim = rows // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class LlamaFamily(Family):
    model_types: ClassVar[tuple[str, ...]] = ("llama", "mistral")
    arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.LLAMA

    def add_hparams(self, writer: gguf.GGUFWriter) -> None:
        self.add_common(writer)
        hidden = int(self.hparam("hidden_size"))
        heads = int(self.hparam("num_attention_heads"))
        writer.add_rope_dimension_count(int(self.config.get("head_dim") or hidden // heads))
        theta = self.rope_theta()
        if theta is not None:
            writer.add_rope_freq_base(theta)
        self.rope_scaling(writer)
        if self.config.get("sliding_window") and self.config.get("model_type") == "mistral":
            raise ConvertError(
                "Mistral with sliding-window attention is not supported by llama.cpp's llama arch"
            )

    def transform(self, gguf_name: str, source: str) -> Transform | None:
        heads = int(self.hparam("num_attention_heads"))
        kv_heads = int(self.config.get("num_key_value_heads") or heads)
        if gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
            return lambda w: rope_permute(w, heads)
        if gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
            return lambda w: rope_permute(w, kv_heads)
        return None
