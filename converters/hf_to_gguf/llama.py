"""The llama family: Llama 2/3.x, SmolLM/SmolLM2, Mistral (dense)."""

from __future__ import annotations

import math
from typing import ClassVar

import gguf
import numpy as np

from .base import ConvertError, Family, TensorPlan, Transform


def rope_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k rows from transformers' rotate-half RoPE layout to llama.cpp's interleaved pairs.

    transformers rotates dimension i with i + head_dim/2 inside each head; llama.cpp's llama graph
    rotates adjacent pairs (2i, 2i+1). Swapping the two half-axes of each head maps one onto the other.
    """
    rows = weight.shape[0]
    head_dim = rows // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def llama3_rope_factors(params: dict, head_dim: int, theta: float) -> np.ndarray:
    """The per-frequency divisors llama.cpp applies for `rope_type: llama3` (its `rope_freqs` tensor):
    1 for short wavelengths, `factor` for long ones, a smooth blend between. The formula, defaults and
    float32 arithmetic are those of llama.cpp's converter, so the factors come out the same: bit for bit
    for the Llama 3.1/3.2 configs (only a float32 pow rounding otherwise could move a blend by an ulp)."""
    numbers = {
        key: params.get(key, default)
        for key, default in (
            ("factor", 8.0),
            ("low_freq_factor", 1.0),
            ("high_freq_factor", 4.0),
            ("original_max_position_embeddings", 8192),
        )
    }
    bad = [k for k, v in numbers.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ConvertError(f"config.json's llama3 RoPE {bad[0]} is {numbers[bad[0]]!r}, not a number")
    factor, low, high, old_context = (float(v) for v in numbers.values())
    if not (factor > 0 and 0 < low < high and old_context > 0):
        raise ConvertError(
            f"config.json's llama3 RoPE scaling (factor {factor}, low_freq_factor {low}, "
            f"high_freq_factor {high}, original_max_position_embeddings {old_context}) is not usable"
        )
    f32 = np.float32
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / f32(head_dim)
    freqs = f32(1.0) / np.power(f32(theta), exponents)
    factors = []
    for freq in freqs:
        wavelength = f32(2 * math.pi) / freq
        if wavelength < f32(old_context / high):
            factors.append(f32(1.0))
        elif wavelength > f32(old_context / low):
            factors.append(f32(factor))
        else:
            smooth = (f32(old_context) / wavelength - f32(low)) / f32(high - low)
            factors.append(f32(1.0) / ((f32(1.0) - smooth) / f32(factor) + smooth))
    return np.array(factors, dtype=np.float32)


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
        if self.rope_kind() != "llama3":  # llama3 scaling goes in the rope_freqs tensor instead
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

    def computed_tensors(self) -> list[TensorPlan]:
        if self.rope_kind() != "llama3":
            return []
        factors = llama3_rope_factors(self.rope_parameters(), self.head_dim(), self.rope_theta() or 10000.0)
        return [TensorPlan("rope_freqs.weight", "", factors.shape, values=factors)]
