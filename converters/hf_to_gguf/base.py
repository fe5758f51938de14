"""The interface every architecture family implements, and the streaming GGUF writer they share.

A family turns a checkpoint into (1) hyperparameters for the GGUF metadata and (2) a plan: for each
safetensors tensor, its GGUF name, shape and a transform. The writer lays out every tensor's header
from the plan alone, then reads, transforms, converts and writes one tensor at a time, so peak memory
is about one tensor, not the checkpoint.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import gguf
import numpy as np

from ondevice.planning.preflight import LIMITS, ShapeError, bounded
from ondevice.progress import Progress, ProgressFn, Unit

from ..outputs import ConvertError, OutType
from ..safetensors_reader import Checkpoint
from .vocab import Vocab, build_vocab

Transform = Callable[[np.ndarray], np.ndarray]


# config.json sizes beside num_hidden_layers (checked once a checkpoint is opened).
_CONFIG_LIMITS = {
    "hidden_size": LIMITS["size"],
    "intermediate_size": LIMITS["size"],
    "num_attention_heads": LIMITS["heads"],
    "num_key_value_heads": LIMITS["heads"],
    "head_dim": LIMITS["size"],
    "vocab_size": LIMITS["vocab"],
    "max_position_embeddings": LIMITS["size"],
}


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: its GGUF name and numpy-order shape, and how to make it from its source
    (or its `values`, for a tensor the family computes from config.json, such as RoPE factors)."""

    name: str
    source: str
    shape: tuple[int, ...]
    transform: Transform | None = None
    values: np.ndarray | None = field(default=None, compare=False)


def _identity(array: np.ndarray) -> np.ndarray:
    return array


class Family(ABC):
    """An architecture family: which `model_type`s it reads and how it maps them to a llama.cpp arch."""

    model_types: ClassVar[tuple[str, ...]]
    arch: ClassVar[gguf.MODEL_ARCH]
    # Suffixes of source tensors that carry nothing llama.cpp needs (rotary caches).
    skipped: ClassVar[tuple[str, ...]] = ("rotary_emb.inv_freq",)
    # Whether the arch's loader wants attention key/value lengths even when they equal width / heads.
    always_head_dim: ClassVar[bool] = False

    def __init__(self, directory: Path, config: dict[str, Any], checkpoint: Checkpoint) -> None:
        self.directory = directory
        self.config = config
        self.checkpoint = checkpoint
        # Every size config.json states is checked before anything is sized by it.
        self.n_layers = self.int_hparam("num_hidden_layers", limit=LIMITS["layers"])
        for key, limit in _CONFIG_LIMITS.items():
            if self.config.get(key) is not None:
                self.int_hparam(key, limit=limit)
        self.name_map = gguf.get_tensor_name_map(self.arch, self.n_layers)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]

    def hparam(self, key: str, default: Any = ...) -> Any:
        value = self.config.get(key, default)
        if value is ...:
            raise ConvertError(
                f"config.json lacks {key!r}, which a {self.config.get('model_type')} model needs"
            )
        return value

    def int_hparam(self, key: str, default: Any = ..., limit: int = LIMITS["size"]) -> int:
        """A whole number from config.json, at least 1 and at most `limit`, or one clear error."""
        value = self.hparam(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            number = bounded(f"config.json's {key}", value, limit)
        except ShapeError as exc:
            raise ConvertError(str(exc)) from None
        if number < 1:
            raise ConvertError(f"config.json's {key} is {number}; it must be at least 1")
        return number

    @property
    def n_vocab(self) -> int:
        return self.int_hparam("vocab_size", limit=LIMITS["vocab"])

    @abstractmethod
    def add_hparams(self, writer: gguf.GGUFWriter) -> None:
        """Write the architecture's hyperparameters."""

    @functools.cached_property
    def vocab(self) -> Vocab:
        return build_vocab(self.directory, self.n_vocab)

    def add_vocab(self, writer: gguf.GGUFWriter) -> None:
        self.vocab.add_to(writer, self.directory, self.n_vocab)

    def transform(self, gguf_name: str, source: str) -> Transform | None:
        """A change the family makes to a tensor's values (permutation, norm offset), if any."""
        return None

    def expected_shape(self, gguf_name: str) -> tuple[int, ...] | None:
        """The shape config.json implies for a tensor (None: not checked)."""
        return self.lookup_shape(gguf_name)

    def plan(self) -> list[TensorPlan]:
        plans = []
        for source, ref in self.checkpoint.tensors.items():
            if source.endswith(self.skipped):
                continue
            name = self.name_map.get_name(source, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ConvertError(f"tensor {source!r} has no GGUF name for {self.arch_name}")
            expected = self.expected_shape(name)
            if expected is not None and tuple(expected) != ref.shape:
                raise ConvertError(
                    f"tensor {source!r} has shape {list(ref.shape)}; config.json implies {list(expected)}"
                )
            plans.append(TensorPlan(name, source, ref.shape, self.transform(name, source)))
        self.check_complete(plans)
        return plans + self.computed_tensors()

    def computed_tensors(self) -> list[TensorPlan]:
        """Tensors the family computes from config.json rather than reads (none by default)."""
        return []

    def check_complete(self, plans: list[TensorPlan]) -> None:
        """Refuse a checkpoint llama.cpp could not load: every layer must have the tensors the others
        have, and the embeddings and final norm must be there. (The families here have uniform
        layers; one whose layers differ overrides this.)"""
        names = {p.name for p in plans}
        missing = [n for n in ("token_embd.weight", "output_norm.weight") if n not in names]
        per_layer: dict[int, set[str]] = {i: set() for i in range(self.n_layers)}
        for name in names:
            parts = name.split(".")
            if parts[0] == "blk":
                index = int(parts[1])
                if index not in per_layer:
                    raise ConvertError(f"tensor {name} is past the {self.n_layers} layers config.json has")
                per_layer[index].add(".".join(parts[2:]))
        wanted = set().union(*per_layer.values()) if per_layer else set()
        for index, have in per_layer.items():
            missing += [f"blk.{index}.{suffix}" for suffix in sorted(wanted - have)]
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            raise ConvertError(f"the checkpoint lacks tensors llama.cpp needs: {shown}")

    def head_dim(self) -> int:
        """Width of one attention head: config.json's head_dim, else hidden_size / num_attention_heads
        (a family whose default differs, or that has no default, overrides this)."""
        hidden = self.int_hparam("hidden_size")
        heads = self.int_hparam("num_attention_heads", limit=LIMITS["heads"])
        return self.int_hparam("head_dim", hidden // heads or 1)

    def config_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (numpy order) of the common decoder tensors, from config.json."""
        hidden = self.int_hparam("hidden_size")
        heads = self.int_hparam("num_attention_heads", limit=LIMITS["heads"])
        kv_heads = self.int_hparam("num_key_value_heads", heads, LIMITS["heads"])
        head_dim = self.head_dim()
        ffn = self.int_hparam("intermediate_size")
        return {
            "token_embd.weight": (self.n_vocab, hidden),
            "output.weight": (self.n_vocab, hidden),
            "attn_q.weight": (heads * head_dim, hidden),
            "attn_k.weight": (kv_heads * head_dim, hidden),
            "attn_v.weight": (kv_heads * head_dim, hidden),
            "attn_output.weight": (hidden, heads * head_dim),
            "attn_q.bias": (heads * head_dim,),
            "attn_k.bias": (kv_heads * head_dim,),
            "attn_v.bias": (kv_heads * head_dim,),
            "ffn_gate.weight": (ffn, hidden),
            "ffn_up.weight": (ffn, hidden),
            "ffn_down.weight": (hidden, ffn),
            "attn_norm.weight": (hidden,),
            "ffn_norm.weight": (hidden,),
            "output_norm.weight": (hidden,),
            "attn_q_norm.weight": (head_dim,),
            "attn_k_norm.weight": (head_dim,),
            "post_attention_norm.weight": (hidden,),
            "post_ffw_norm.weight": (hidden,),
        }

    def lookup_shape(self, gguf_name: str) -> tuple[int, ...] | None:
        shapes = self.config_shapes()
        if gguf_name in shapes:
            return shapes[gguf_name]
        parts = gguf_name.split(".")
        if parts[0] == "blk" and len(parts) >= 4:
            return shapes.get(".".join(parts[2:]))
        return None

    def add_common(self, writer: gguf.GGUFWriter) -> None:
        """Hyperparameters every decoder-only family shares."""
        hidden = self.int_hparam("hidden_size")
        heads = self.int_hparam("num_attention_heads", limit=LIMITS["heads"])
        writer.add_block_count(self.n_layers)
        writer.add_context_length(self.int_hparam("max_position_embeddings"))
        writer.add_embedding_length(hidden)
        writer.add_feed_forward_length(self.int_hparam("intermediate_size"))
        writer.add_head_count(heads)
        writer.add_head_count_kv(self.int_hparam("num_key_value_heads", heads, LIMITS["heads"]))
        eps = self.hparam("rms_norm_eps")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ConvertError(f"config.json's rms_norm_eps is {eps!r}; it must be a number between 0 and 1")
        writer.add_layer_norm_rms_eps(float(eps))
        writer.add_vocab_size(self.n_vocab)
        head_dim = self.head_dim()
        if self.always_head_dim or head_dim != hidden // heads:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)

    def rope_theta(self, layer_type: str | None = None) -> float | None:
        """rope_theta from transformers 5's rope_parameters (per layer type) or the older flat key."""
        params = self.config.get("rope_parameters") or {}
        if layer_type is not None and isinstance(params.get(layer_type), dict):
            params = params[layer_type]
        theta = params.get("rope_theta", self.config.get("rope_theta"))
        return float(theta) if theta is not None else None

    def rope_parameters(self, layer_type: str | None = None) -> dict[str, Any]:
        """transformers 5's rope_parameters (per layer type) or the older rope_scaling."""
        params = self.config.get("rope_parameters") or self.config.get("rope_scaling") or {}
        if layer_type is not None and isinstance(params.get(layer_type), dict):
            params = params[layer_type]
        return params if isinstance(params, dict) else {}

    def rope_kind(self, layer_type: str | None = None) -> str:
        params = self.rope_parameters(layer_type)
        return str(params.get("rope_type", params.get("type")) or "default")

    def rope_scaling(self, writer: gguf.GGUFWriter, layer_type: str | None = None) -> None:
        params = self.rope_parameters(layer_type)
        kind = self.rope_kind(layer_type)
        if kind == "default":
            return
        if kind == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(params["factor"]))
            return
        raise ConvertError(f"RoPE scaling {kind!r} is not supported yet")


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise ConvertError(f"{directory} has no config.json: not a Hugging Face checkpoint directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConvertError(f"config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ConvertError("config.json is not a JSON object")
    return config


def output_type_for(plan: TensorPlan, outtype: OutType) -> gguf.GGMLQuantizationType:
    """1-D tensors (norms, biases) stay F32, as llama.cpp expects; matrices take the output type,
    except Q8_0 rows that are not a whole number of 32-value blocks, which fall back to F16."""
    if len(plan.shape) < 2:
        return gguf.GGMLQuantizationType.F32
    if outtype is OutType.Q8_0 and plan.shape[-1] % gguf.GGML_QUANT_SIZES[outtype.ggml_type][0]:
        return gguf.GGMLQuantizationType.F16
    return outtype.ggml_type


def _encode(array: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


class _RowBlocks:
    """A tensor that GGUFWriter.write_tensor_data writes block by block of rows (it only asks for
    `nbytes` and `tofile`): a 262144-row embedding never sits in memory whole, as float32 or encoded."""

    BLOCK_ELEMENTS = 1 << 22  # 16 MiB of float32 per block

    def __init__(self, checkpoint: Checkpoint, plan: TensorPlan, qtype: gguf.GGMLQuantizationType) -> None:
        self.checkpoint, self.plan, self.qtype = checkpoint, plan, qtype
        self.nbytes = _nbytes(plan.shape, qtype)

    def tofile(self, handle: Any) -> None:
        rows = self.plan.shape[0]
        row_elements = int(np.prod(self.plan.shape[1:], dtype=np.int64))
        step = max(1, self.BLOCK_ELEMENTS // max(row_elements, 1))
        written = 0
        for start in range(0, rows, step):
            values = _finite(
                self.checkpoint.read_rows(self.plan.source, start, min(start + step, rows)), self.plan
            )
            block = _encode(values, self.qtype)
            block.tofile(handle)
            written += block.nbytes
        if written != self.nbytes:
            raise ConvertError(f"internal: {self.plan.source} wrote {written} bytes, planned {self.nbytes}")


def _finite(values: np.ndarray, plan: TensorPlan) -> np.ndarray:
    """`values`, unless they hold NaN or infinity: such a model generates nothing useful."""
    if not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise ConvertError(f"tensor {plan.source!r} holds {bad} NaN or infinite values")
    return values


def _nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    return int(np.prod(gguf.quant_shape_to_byte_shape(shape, qtype), dtype=np.int64))


def write_gguf(
    family: Family,
    out: Path,
    outtype: OutType,
    metadata: dict[str, str],
    progress: ProgressFn | None = None,
    task: str = "convert",
) -> None:
    """Write the family's checkpoint as one GGUF file at `out`, one tensor in memory at a time;
    `progress` hears of each tensor as `task`."""
    plans = family.plan()
    writer = gguf.GGUFWriter(out, family.arch_name)
    try:
        for key, value in metadata.items():
            writer.add_string(key, value)
        writer.add_file_type(int(outtype.file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        family.add_hparams(writer)
        family.add_vocab(writer)
        types = []
        for plan in plans:
            qtype = output_type_for(plan, outtype)
            types.append(qtype)
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                dtype = np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16
                writer.add_tensor_info(plan.name, plan.shape, np.dtype(dtype), _nbytes(plan.shape, qtype))
            else:
                byte_shape = gguf.quant_shape_to_byte_shape(plan.shape, qtype)
                writer.add_tensor_info(
                    plan.name, byte_shape, np.dtype(np.uint8), _nbytes(plan.shape, qtype), raw_dtype=qtype
                )
        writer.write_header_to_file(out)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for done, (plan, qtype) in enumerate(zip(plans, types, strict=True)):
            if progress is not None:
                progress(Progress(task, plan.name, done, len(plans), Unit.TENSORS))
            if plan.transform is None and len(plan.shape) >= 2:
                # GGUFWriter.write_tensor_data is typed for arrays, but of its argument it reads only
                # `nbytes` and calls `tofile`, which _RowBlocks has (and `byteswap` on a big-endian host).
                blocks = cast(np.ndarray, _RowBlocks(family.checkpoint, plan, qtype))
                writer.write_tensor_data(blocks)
            else:
                source = plan.values if plan.values is not None else family.checkpoint.read(plan.source)
                array = (plan.transform or _identity)(_finite(source, plan))
                if tuple(array.shape) != plan.shape:  # a transform must never change the planned layout
                    raise ConvertError(f"internal: {plan.source} became {array.shape}, planned {plan.shape}")
                writer.write_tensor_data(_encode(array, qtype))
                del array
        if progress is not None:
            progress(Progress(task, "", len(plans), len(plans), Unit.TENSORS))
    finally:
        writer.close()
        family.checkpoint.close()


def planned_size(family: Family, outtype: OutType) -> int:
    """Bytes the tensor data will take (the metadata adds a few MB at most)."""
    return sum(_nbytes(p.shape, output_type_for(p, outtype)) for p in family.plan())
