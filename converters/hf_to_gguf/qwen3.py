"""The qwen3 family (dense Qwen3): Qwen2 without q/k/v biases, with per-head RMS norms on q and k."""

from __future__ import annotations

from typing import ClassVar

import gguf

from .base import ConvertError, TensorPlan
from .qwen2 import Qwen2Family


class Qwen3Family(Qwen2Family):
    """Qwen2's hyperparameters and RoPE, written by Qwen2Family. llama.cpp's qwen3 graph applies
    `attn_q_norm`/`attn_k_norm` (one head_dim-wide weight shared by all heads) before a rotate-half
    (NeoX) RoPE, as transformers does: no permutation, no offset.

    head_dim is its own field in Qwen3 (128 in every released size, not hidden_size / heads), so it
    is required rather than derived; the key and value lengths are always written, as llama.cpp's
    converter does."""

    model_types: ClassVar[tuple[str, ...]] = ("qwen3",)
    arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.QWEN3
    always_head_dim: ClassVar[bool] = True

    def head_dim(self) -> int:
        return self.int_hparam("head_dim")

    def plan(self) -> list[TensorPlan]:
        # Options transformers' Qwen3 has and llama.cpp's qwen3 graph lacks: refused before any output.
        for key in ("use_sliding_window", "attention_bias"):
            if self.config.get(key):
                raise ConvertError(f"config.json sets {key}; llama.cpp's qwen3 arch has no such option")
        return super().plan()
