"""The qwen2 family: Qwen2 and Qwen2.5 (q/k/v biases, tied embeddings in the small sizes)."""

from __future__ import annotations

from typing import ClassVar

import gguf

from .base import Family


class Qwen2Family(Family):
    """llama.cpp's qwen2 graph uses transformers' rotate-half RoPE (NeoX style): no permutation."""

    model_types: ClassVar[tuple[str, ...]] = ("qwen2",)
    arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.QWEN2

    def add_hparams(self, writer: gguf.GGUFWriter) -> None:
        self.add_common(writer)
        theta = self.rope_theta()
        if theta is not None:
            writer.add_rope_freq_base(theta)
        self.rope_scaling(writer)
