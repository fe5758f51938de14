"""The phi3 family: Phi-3, Phi-3.5-mini and Phi-4-mini (fused qkv and gate_up, LongRoPE, partial rotary).

Written as llama.cpp 0.3.36's converter writes it and its phi3 loader reads it:

- `qkv_proj` stays fused as `attn_qkv` (q rows, then k, then v: llama.cpp's build_qkv slices it so)
  and `gate_up_proj` stays fused as `ffn_up` of 2 x intermediate_size rows (gate half first: its
  fused SwiGLU applies SiLU to the first half, as transformers' Phi3MLP does). No permutation: the
  phi3 graph's RoPE is rotate-half (NeoX), as transformers'.
- LongRoPE (`longrope`, or its old name `su`): the per-pair frequency divisors become the
  `rope_factors_long`/`rope_factors_short` tensors, llama.cpp's context size picks between them,
  and the cos/sin scale goes to rope.scaling.attn_factor.
- partial_rotary_factor sets the rope dimension count (Phi-4-mini rotates 96 of 128 per head).
- sliding_window is written when present, else 0, as llama.cpp's converter does (its phi3 loader
  then turns sliding-window attention off and warns).
"""

from __future__ import annotations

import math
from typing import ClassVar

import gguf
import numpy as np

from ondevice.planning.preflight import LIMITS

from .base import ConvertError, Family, TensorPlan

_LONGROPE = ("longrope", "su")


class Phi3Family(Family):
    model_types: ClassVar[tuple[str, ...]] = ("phi3",)
    arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.PHI3

    def head_dim(self) -> int:
        # llama.cpp's phi3 loader sizes q and the output projection by hidden_size alone.
        hidden = self.int_hparam("hidden_size")
        heads = self.int_hparam("num_attention_heads", limit=LIMITS["heads"])
        if hidden % heads:
            raise ConvertError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        if self.config.get("head_dim") not in (None, hidden // heads):
            raise ConvertError(
                f"config.json's head_dim {self.config['head_dim']!r} is not hidden_size / heads "
                f"({hidden // heads}); llama.cpp's phi3 arch cannot hold it"
            )
        return hidden // heads

    def original_context(self) -> int:
        """The pretraining context LongRoPE scales from. transformers prefers the flat key to the one in
        rope_parameters; llama.cpp's converter refuses a config with neither, and so does this one."""
        key = "original_max_position_embeddings"
        if key not in self.config and key in self.rope_parameters():
            return self.int_hparam(key, self.rope_parameters()[key])
        return self.int_hparam(key)

    def rope_dims(self) -> int:
        params = self.rope_parameters()
        factor = params.get("partial_rotary_factor", self.config.get("partial_rotary_factor", 1.0))
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
            raise ConvertError(f"config.json's partial_rotary_factor is {factor!r}; it must be in (0, 1]")
        heads = self.int_hparam("num_attention_heads", limit=LIMITS["heads"])
        dims = int(factor * self.int_hparam("hidden_size")) // heads  # as llama.cpp's converter rounds
        if dims < 2 or dims % 2:
            raise ConvertError(
                f"partial_rotary_factor {factor} gives {dims} rotary dimensions per head; "
                "they must be an even number, at least 2"
            )
        return dims

    def longrope(self) -> bool:
        """Whether config.json scales RoPE with LongRoPE (`longrope`, or its old name `su`)."""
        kind = self.rope_kind()
        if kind == "default":
            params = self.rope_parameters()
            if params.get("long_factor") is not None or params.get("short_factor") is not None:
                raise ConvertError("config.json has LongRoPE factors but no rope_type 'longrope'")
            return False
        if kind not in _LONGROPE:
            raise ConvertError(f"RoPE scaling {kind!r} is not supported for phi3 (longrope or su only)")
        return True

    def rope_factors(self, key: str) -> np.ndarray:
        """One of the LongRoPE factor lists, one divisor per rotary pair, as float32."""
        values = self.rope_parameters().get(key)
        pairs = self.rope_dims() // 2
        if values is None:
            raise ConvertError(f"config.json's LongRoPE lacks {key!r}, which a phi3 model needs")
        if not isinstance(values, list) or len(values) != pairs:
            length = len(values) if isinstance(values, list) else type(values).__name__
            raise ConvertError(f"config.json's {key} has {length} values; {pairs} rotary pairs need {pairs}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e6 for v in values):
            raise ConvertError(f"config.json's {key} holds values that are not positive numbers")
        return np.asarray(values, dtype=np.float32)

    def attention_factor(self) -> float:
        """LongRoPE's cos/sin scale as transformers computes it: rope_parameters' attention_factor, else
        sqrt(1 + ln(s) / ln(original context)) with s its `factor`, else max / original context.
        llama.cpp's converter computes the last, which is all Phi's own configs give."""
        params = self.rope_parameters()
        original = self.original_context()
        explicit = params.get("attention_factor")
        scale = params.get("factor") or self.int_hparam("max_position_embeddings") / original
        for key, value in (("attention_factor", explicit), ("factor", scale)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6
            ):
                raise ConvertError(f"config.json's rope_parameters.{key} is {value!r}; it must be positive")
        if explicit is not None:
            return float(explicit)
        return math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 and original > 1 else 1.0

    def rope_theta_required(self) -> float:
        theta = self.rope_theta()
        if theta is None:
            raise ConvertError("config.json lacks 'rope_theta', which a phi3 model needs")
        return theta

    def add_hparams(self, writer: gguf.GGUFWriter) -> None:
        self.add_common(writer)
        writer.add_rope_scaling_orig_ctx_len(self.original_context())
        writer.add_rope_dimension_count(self.rope_dims())
        writer.add_rope_freq_base(self.rope_theta_required())
        window = self.config.get("sliding_window")
        writer.add_sliding_window(0 if window in (None, 0) else self.int_hparam("sliding_window"))
        if self.longrope():
            writer.add_rope_scaling_attn_factors(self.attention_factor())

    def config_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().config_shapes()
        hidden = self.int_hparam("hidden_size")
        heads = self.int_hparam("num_attention_heads", limit=LIMITS["heads"])
        kv_heads = self.int_hparam("num_key_value_heads", heads, LIMITS["heads"])
        ffn = self.int_hparam("intermediate_size")
        shapes["attn_qkv.weight"] = ((heads + 2 * kv_heads) * self.head_dim(), hidden)
        shapes["ffn_up.weight"] = (2 * ffn, hidden)  # gate_up_proj, fused
        return shapes

    def plan(self) -> list[TensorPlan]:
        # Every hyperparameter add_hparams writes is checked here, before any output is opened.
        self.int_hparam("max_position_embeddings")
        self.original_context()
        self.rope_dims()
        self.rope_theta_required()
        if self.longrope():
            self.attention_factor()
        return super().plan()

    def computed_tensors(self) -> list[TensorPlan]:
        if not self.longrope():
            return []
        plans = []
        for key, name in (("long_factor", "rope_factors_long"), ("short_factor", "rope_factors_short")):
            values = self.rope_factors(key)
            plans.append(TensorPlan(f"{name}.weight", f"config.json's {key}", values.shape, values=values))
        return plans
