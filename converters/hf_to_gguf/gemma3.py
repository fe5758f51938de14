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
        theta = self.rope_theta("full_attention")  # the global layers
        if theta is not None:
            writer.add_rope_freq_base(theta)
        local_theta = self.local_rope_theta()
        if local_theta is not None:
            writer.add_rope_freq_base_swa(local_theta)
        self.rope_scaling(writer, "full_attention")
        if self.config.get("attn_logit_softcapping") is not None:
            raise ConvertError("attention logit softcapping is not part of Gemma 3; this config is not one")
        if softcap := self.config.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(float(softcap))
        if self.config.get("sliding_window"):
            writer.add_sliding_window(int(self.config["sliding_window"]))

    def local_rope_theta(self) -> float | None:
        """The sliding-window layers' RoPE base: transformers 5's rope_parameters["sliding_attention"],
        or the rope_local_base_freq older configs have (None: neither; llama.cpp then takes 10000)."""
        params = self.config.get("rope_parameters") or {}
        local = params.get("sliding_attention") if isinstance(params, dict) else None
        if isinstance(local, dict) and local.get("rope_theta") is not None:
            return float(local["rope_theta"])
        base = self.config.get("rope_local_base_freq")
        return float(base) if base is not None else None

    def transform(self, gguf_name: str, source: str) -> Transform | None:
        return _plus_one if source.endswith("norm.weight") else None
