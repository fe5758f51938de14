"""Gemma 3 text models (gemma3_text): sandwich norms, q/k norms, sliding-window layers."""

from __future__ import annotations

from typing import ClassVar

import gguf
import numpy as np

from .base import ConvertError, Family, Transform


def _plus_one(weight: np.ndarray) -> np.ndarray:
    return weight + np.float32(1.0)


class Gemma3Family(Family):
    """Gemma3RMSNorm multiplies by (1 + weight) while llama.cpp multiplies by the weight, so every norm
    is stored plus one. The embedding scale (sqrt of the width) is applied by llama.cpp's gemma3 graph
    itself, and the rotary layout is rotate-half (NeoX) there too, so neither changes the weights."""

    model_types: ClassVar[tuple[str, ...]] = ("gemma3_text",)
    arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.GEMMA3
    always_head_dim: ClassVar[bool] = True

    def add_hparams(self, writer: gguf.GGUFWriter) -> None:
        self.add_common(writer)
        theta = self.rope_theta("full_attention")  # the global layers; llama.cpp fixes the local base
        if theta is not None:
            writer.add_rope_freq_base(theta)
        self.rope_scaling(writer, "full_attention")
        if self.config.get("attn_logit_softcapping") is not None:
            raise ConvertError("attention logit softcapping is not part of Gemma 3; this config is not one")
        if softcap := self.config.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(float(softcap))
        if self.config.get("sliding_window"):
            writer.add_sliding_window(int(self.config["sliding_window"]))

    def transform(self, gguf_name: str, source: str) -> Transform | None:
        return _plus_one if source.endswith("norm.weight") else None
