"""The smollm3 family (SmolLM3): a llama-shaped decoder in which every fourth layer has no RoPE."""

from __future__ import annotations

from typing import ClassVar

import gguf

from ondevice.planning.preflight import LIMITS

from .base import ConvertError, TensorPlan
from .llama import LlamaFamily

# llama.cpp's smollm3 loader fixes this step (hparams.n_no_rope_layer_step = 4): layer i skips RoPE
# when (i + 1) % 4 == 0. No GGUF key can say otherwise, so a config listing other layers is refused.
LLAMA_CPP_NO_ROPE_STEP = 4


class SmolLM3Family(LlamaFamily):
    """llama.cpp's smollm3 graph is its llama graph with the NoPE layers skipped: interleaved (NORM)
    RoPE, so q/k are permuted as for llama (in the NoPE layers too, where q and k move alike and
    their dot products do not change). Tied embeddings: llama.cpp reuses token_embd without output."""

    model_types: ClassVar[tuple[str, ...]] = ("smollm3",)
    arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.SMOLLM3

    def rope_layers(self) -> list[bool]:
        """Which layers apply RoPE, as transformers reads config.json: `no_rope_layers` (1 = RoPE),
        else a NoPE layer every `no_rope_layer_interval` layers."""
        listed = self.config.get("no_rope_layers")
        if listed is not None:
            if not isinstance(listed, list) or not all(isinstance(v, int) and v in (0, 1) for v in listed):
                raise ConvertError("config.json's no_rope_layers must be a list of 0s and 1s")
            if len(listed) < self.n_layers:
                raise ConvertError(
                    f"config.json's no_rope_layers has {len(listed)} entries for {self.n_layers} layers"
                )
            return [bool(v) for v in listed[: self.n_layers]]
        if self.config.get("no_rope_layer_interval") is None:
            raise ConvertError(
                "config.json lacks 'no_rope_layers' and 'no_rope_layer_interval', one of which a "
                "smollm3 model needs to say which layers skip RoPE"
            )
        interval = self.int_hparam("no_rope_layer_interval", limit=LIMITS["layers"])
        return [(i + 1) % interval != 0 for i in range(self.n_layers)]

    def plan(self) -> list[TensorPlan]:
        for key in ("use_sliding_window", "attention_bias", "mlp_bias"):
            if self.config.get(key):
                raise ConvertError(f"config.json sets {key}; llama.cpp's smollm3 arch has no such option")
        kind = self.rope_kind()
        if kind not in ("default", "linear"):
            # llama.cpp's smollm3 graph passes no frequency factors, so a llama3 rope_freqs would not load.
            raise ConvertError(f"RoPE scaling {kind!r} is not supported for smollm3 yet")
        wanted = [(i + 1) % LLAMA_CPP_NO_ROPE_STEP != 0 for i in range(self.n_layers)]
        have = self.rope_layers()
        if have != wanted:
            nope = [i for i, rope in enumerate(have) if not rope]
            raise ConvertError(
                f"config.json puts the layers without RoPE at {nope}; llama.cpp's smollm3 arch "
                f"can only skip RoPE in every {LLAMA_CPP_NO_ROPE_STEP}th layer (3, 7, 11, ...)"
            )
        return super().plan()

    def computed_tensors(self) -> list[TensorPlan]:
        return []  # plan() refuses llama3 scaling, the one case LlamaFamily computes a tensor for
