"""Memory pre-flight: how much RAM (and VRAM) a model will take at a context size, before loading it.

The estimate follows what llama.cpp allocates and what the worker process then keeps resident:

- weights: the GGUF's tensor bytes (read into memory with mmap off; mapped and paged in with it on);
- KV cache: per layer, (K heads x key width + V heads x value width) x cells x bytes per element,
  cells being the context rounded up to 256. Sliding-window layers get a full-size cache, because
  llama-cpp-python's default context parameters ask for one (``swa_full``; the log says "using
  full-size SWA cache"); with ``swa_full=False`` they would hold window + micro-batch cells;
- compute: llama.cpp *reserves* buffers for the worst case (logits for a whole micro-batch: vocab x
  ubatch x 4 bytes, 512 MiB for Gemma 3), but on the CPU only the pages a decode touches become
  resident: activations of one micro-batch and one row of logits. On a GPU the reservation is real;
- runtime: the worker's Python, llama.cpp and the tokenizer's tables (they grow with the vocabulary).

The runtime constants were fitted to RSS measured with mmap off on the bundled models (see
tests/planning/test_preflight.py, which checks the estimate stays within 15% of the measurement).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import GGUFError, OndeviceError
from ..gguf_summary import GGUFSummary
from ..runtime.protocol import LoadOptions
from ..units import format_bytes
from .hardware import Hardware

__all__ = [
    "InsufficientMemoryError",
    "MemoryCheck",
    "MemoryEstimate",
    "ModelShape",
    "check_memory",
    "combined",
    "estimate_memory",
]

MiB = 1 << 20
RUNTIME_BASE_BYTES = 60 * MiB  # the worker's interpreter and llama.cpp with nothing loaded
VOCAB_BYTES_PER_TOKEN = 120  # llama.cpp's vocabulary tables per token (strings, maps, scores)
VRAM_HEADROOM_BYTES = 512 * MiB  # the CUDA context and driver take this much before any buffer
KV_PAD = 256  # llama.cpp rounds the context (and the SWA cache) up to a multiple of this
# Bytes per element of each KV cache type (block types: block bytes / 32 elements).
KV_TYPE_BYTES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
# Every Nth layer is global in these architectures (llama.cpp sets it in code, not in the GGUF).
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4}


class InsufficientMemoryError(OndeviceError):
    """The model would not fit in the memory this machine has free."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model, from its GGUF header or a model-pair profile."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_vocab: int
    kv_heads: tuple[int, ...]  # per layer
    key_dim: int
    value_dim: int
    n_ctx_train: int
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()  # per layer: does it use the sliding window

    @classmethod
    def from_summary(cls, summary: GGUFSummary) -> ModelShape:
        arch = summary.architecture or ""

        def value(key: str, default: Any = None) -> Any:
            return summary.metadata.get(f"{arch}.{key}", default)

        def number(key: str, default: Any = 0, limit: int = LIMITS["size"]) -> int:
            raw = value(key, default)
            try:
                return bounded(f"{arch}.{key}", _first(raw) if isinstance(raw, (list, tuple)) else raw, limit)
            except ShapeError as exc:
                raise GGUFError(f"{summary.path}: {exc}") from None

        # Every number is bounded before anything is sized by it: a 320-byte file may claim 2^31 layers.
        n_layer = number("block_count", 0, LIMITS["layers"])
        n_embd = number("embedding_length")
        number("attention.head_count", 1, LIMITS["heads"])
        number("attention.head_count_kv", 1, LIMITS["heads"])
        n_head = _per_layer(value("attention.head_count", 1), n_layer)
        kv_heads = _per_layer(value("attention.head_count_kv", n_head), n_layer)
        head_dim = n_embd // max(n_head) if n_head and max(n_head) else 0
        n_vocab = (
            number("vocab_size", None, LIMITS["vocab"]) if value("vocab_size") else _token_count(summary)
        )
        window = number("attention.sliding_window", 0)
        pattern = number("attention.sliding_window_pattern", 0, LIMITS["layers"]) or SWA_PATTERNS.get(arch, 0)
        number("feed_forward_length", 4 * n_embd)
        number("attention.key_length", head_dim)
        number("attention.value_length", head_dim)
        number("context_length", 0)
        return cls(
            n_layer=n_layer,
            n_embd=n_embd,
            n_ff=_first(value("feed_forward_length", 4 * n_embd)),
            n_vocab=int(n_vocab),
            kv_heads=kv_heads,
            key_dim=int(value("attention.key_length", head_dim)),
            value_dim=int(value("attention.value_length", head_dim)),
            n_ctx_train=int(value("context_length", 0) or 0),
            sliding_window=window,
            swa_layers=_swa_layers(n_layer, window, pattern),
        )

    @classmethod
    def from_architecture(cls, arch: Any) -> ModelShape:
        """From a model-pair profile's [architecture] table (``model_pairs.Architecture``)."""
        bounded("layers", arch.layers, LIMITS["layers"])
        return cls(
            n_layer=arch.layers,
            n_embd=arch.embedding,
            n_ff=arch.feed_forward,
            n_vocab=arch.vocab,
            kv_heads=(arch.kv_heads,) * arch.layers,
            key_dim=arch.head_dim,
            value_dim=arch.head_dim,
            n_ctx_train=arch.context_length,
            sliding_window=arch.sliding_window,
            swa_layers=_swa_layers(arch.layers, arch.sliding_window, arch.sliding_window_pattern),
        )

    def kv_bytes_per_cell(self, kv_cache_type: str = "f16") -> float:
        """KV bytes one token of context costs across all layers."""
        size = KV_TYPE_BYTES[kv_cache_type]
        return sum(h * (self.key_dim + self.value_dim) * size for h in self.kv_heads)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs at one context size, split between system RAM (host) and GPU memory (device)."""

    n_ctx: int
    kv_cache_type: str
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int  # what the decode keeps resident (host) plus the device's reserved buffers
    compute_reserved_bytes: int  # what llama.cpp reserves for compute in all (mostly never touched on CPU)
    runtime_bytes: int
    host_bytes: int
    device_bytes: int  # 0 without GPU offload; counted in RAM on unified-memory machines

    @property
    def total_bytes(self) -> int:
        return self.host_bytes + self.device_bytes

    def breakdown(self) -> str:
        return (
            f"weights {format_bytes(self.weights_bytes)}, KV cache {format_bytes(self.kv_cache_bytes)} "
            f"({self.n_ctx} tokens, {self.kv_cache_type}), compute used {format_bytes(self.compute_bytes)} "
            f"(of {format_bytes(self.compute_reserved_bytes)} reserved), "
            f"runtime {format_bytes(self.runtime_bytes)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_ctx": self.n_ctx,
            "kv_cache_type": self.kv_cache_type,
            "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "compute_bytes": self.compute_bytes,
            "compute_reserved_bytes": self.compute_reserved_bytes,
            "runtime_bytes": self.runtime_bytes,
            "host_bytes": self.host_bytes,
            "device_bytes": self.device_bytes,
            "total_bytes": self.total_bytes,
        }


def estimate_memory(
    shape: ModelShape,
    weights_bytes: int,
    options: LoadOptions,
    *,
    kv_cache_type: str | None = None,
    swa_full: bool = True,
    offload: bool = False,
    layer_weights: tuple[int, ...] = (),
    output_weights: int = 0,
) -> MemoryEstimate:
    """Memory for ``shape`` loaded with ``options``.

    ``offload``: the build can offload and a GPU is there (then ``options.n_gpu_layers`` counts);
    ``layer_weights`` (bytes per block) and ``output_weights`` place weights on the device precisely;
    without them the offloaded share is proportional to the layers.
    """
    n_ctx = pad_cells(options.n_ctx)
    n_ubatch = micro_batch(options)
    kv_cache_type = kv_cache_type or options.kv_cache_type
    n_layer = max(shape.n_layer, 1)
    gpu_layers = options.n_gpu_layers if offload else 0
    all_layers = gpu_layers < 0 or gpu_layers > n_layer
    on_device = n_layer if all_layers else min(gpu_layers, n_layer)
    first_device_layer = n_layer - on_device  # llama.cpp offloads the last layers first

    swa_cells = min(n_ctx, pad_cells(shape.sliding_window + n_ubatch))
    kv_host = kv_device = 0.0
    per_elem = KV_TYPE_BYTES[kv_cache_type]
    for layer, heads in enumerate(shape.kv_heads):
        sliding = not swa_full and layer < len(shape.swa_layers) and shape.swa_layers[layer]
        cells = swa_cells if sliding else n_ctx
        size = kv_layer_bytes(shape, heads, cells, per_elem)
        if layer >= first_device_layer and on_device:
            kv_device += size
        else:
            kv_host += size

    if on_device and layer_weights:
        device_weights = sum(layer_weights[first_device_layer:]) + (output_weights if all_layers else 0)
        host_weights = weights_bytes - sum(layer_weights[first_device_layer:])
        if all_layers:
            host_weights -= min(output_weights, weights_bytes - sum(layer_weights))
    else:
        device_weights = weights_bytes * on_device // n_layer
        host_weights = weights_bytes - device_weights

    logits_row = shape.n_vocab * 4
    activations = activation_bytes(shape, n_ubatch)
    reserved = shape.n_vocab * n_ubatch * 4 + 4 * n_ubatch * shape.n_embd * 4
    output_buffer = logits_row  # llama.cpp's output buffer: one sequence's logits
    compute_host = activations + logits_row + output_buffer
    compute_device = reserved if on_device else 0
    runtime = RUNTIME_BASE_BYTES + shape.n_vocab * VOCAB_BYTES_PER_TOKEN
    return MemoryEstimate(
        n_ctx=n_ctx,
        kv_cache_type=kv_cache_type,
        weights_bytes=int(weights_bytes),
        kv_cache_bytes=int(kv_host + kv_device),
        compute_bytes=int(compute_host + compute_device),
        compute_reserved_bytes=int(reserved + output_buffer),
        runtime_bytes=int(runtime),
        host_bytes=int(runtime + host_weights + kv_host + compute_host),
        device_bytes=int(device_weights + kv_device + compute_device),
    )


def layer_weights(summary: GGUFSummary, shape: ModelShape) -> tuple[tuple[int, ...], int]:
    """Bytes of each block's weights, and of the output layer as an offloading device holds it."""
    layers = [0] * shape.n_layer
    output = 0
    names = set()
    for tensor in summary.tensors:
        names.add(tensor.name)
        match = re.match(r"blk\.(\d+)\.", tensor.name)
        if match and int(match.group(1)) < shape.n_layer:
            layers[int(match.group(1))] += tensor.n_bytes
        elif not tensor.name.startswith("token_embd"):  # the input embeddings stay on the CPU
            output += tensor.n_bytes
    if "output.weight" not in names:
        # Tied embeddings: llama.cpp loads a second copy of token_embd as the output layer on the GPU.
        output += sum(t.n_bytes for t in summary.tensors if t.name == "token_embd.weight")
    return tuple(layers), output


def estimate_for_model(
    summary: GGUFSummary, options: LoadOptions, hw: Hardware | None = None, kv_cache_type: str | None = None
) -> MemoryEstimate:
    """The estimate for a GGUF file, split between RAM and VRAM as ``hw`` would run it."""
    shape = ModelShape.from_summary(summary)
    layers, output = layer_weights(summary, shape)
    offload = hw is not None and can_offload(hw)
    return estimate_memory(
        shape,
        summary.tensor_bytes,
        options,
        kv_cache_type=kv_cache_type,
        offload=offload,
        layer_weights=layers,
        output_weights=output,
    )


def combined(estimates: list[MemoryEstimate]) -> MemoryEstimate:
    """Several models loaded at once (the compare view): their bytes add up; context is the largest."""
    first = estimates[0]
    total = {
        f: sum(getattr(e, f) for e in estimates)
        for f in (
            "weights_bytes",
            "kv_cache_bytes",
            "compute_bytes",
            "compute_reserved_bytes",
            "runtime_bytes",
            "host_bytes",
            "device_bytes",
        )
    }
    return MemoryEstimate(n_ctx=max(e.n_ctx for e in estimates), kv_cache_type=first.kv_cache_type, **total)


def can_offload(hw: Hardware) -> bool:
    """Offloaded layers really go to a GPU: the build supports it and there is one."""
    return hw.gpu_offload_supported and (bool(hw.gpus) or hw.metal)


@dataclass(frozen=True)
class MemoryCheck:
    """An estimate held against a machine's free memory."""

    estimate: MemoryEstimate
    ram_needed: int
    ram_available: int  # free RAM minus the headroom
    headroom: int
    vram_needed: int = 0
    vram_available: int = 0  # free VRAM minus VRAM_HEADROOM_BYTES

    @property
    def fits_ram(self) -> bool:
        return self.ram_needed <= self.ram_available

    @property
    def fits_vram(self) -> bool:
        return self.vram_needed <= self.vram_available or self.vram_needed == 0

    @property
    def fits(self) -> bool:
        return self.fits_ram and self.fits_vram

    def summary(self) -> str:
        """ "needs 2.1 GB, 1.4 GB available after 1.0 GB headroom" (and the VRAM when offloading)."""
        ram = (
            f"needs {format_bytes(self.ram_needed)} of RAM, {format_bytes(max(self.ram_available, 0))} "
            f"available after {format_bytes(self.headroom)} headroom"
        )
        if not self.vram_needed:
            return ram
        return (
            f"{ram}; needs {format_bytes(self.vram_needed)} of GPU memory, "
            f"{format_bytes(max(self.vram_available, 0))} available"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.estimate.as_dict(),
            "ram_needed_bytes": self.ram_needed,
            "ram_available_bytes": self.ram_available,
            "headroom_bytes": self.headroom,
            "vram_needed_bytes": self.vram_needed,
            "vram_available_bytes": self.vram_available,
            "fits": self.fits,
        }


def check_memory(estimate: MemoryEstimate, hw: Hardware, headroom: int) -> MemoryCheck:
    """Does ``estimate`` fit in what ``hw`` has free, keeping ``headroom`` bytes of RAM untouched?"""
    ram_available = hw.available_ram_bytes - headroom
    if hw.unified_memory or not hw.gpus:
        return MemoryCheck(estimate, estimate.total_bytes, ram_available, headroom)
    gpu = max(hw.gpus, key=lambda g: g.memory_bytes)
    free = gpu.free_memory_bytes if gpu.free_memory_bytes is not None else gpu.memory_bytes
    return MemoryCheck(
        estimate,
        estimate.host_bytes,
        ram_available,
        headroom,
        estimate.device_bytes,
        free - VRAM_HEADROOM_BYTES,
    )


def require_fit(check: MemoryCheck, what: str, force: bool = False) -> None:
    """Raise InsufficientMemoryError with the numbers unless the model fits or ``force`` is set."""
    if check.fits or force:
        return
    raise InsufficientMemoryError(
        f"{what} at {check.estimate.n_ctx} tokens of context will not fit: {check.summary()} "
        f"({check.estimate.breakdown()}); use a smaller --ctx, a smaller quantization, or --force"
    )


def pad_cells(n: int) -> int:
    """`n` KV cells rounded up as llama.cpp allocates them."""
    return -(-n // KV_PAD) * KV_PAD


def micro_batch(options: LoadOptions) -> int:
    """The tokens one decode step computes at once (llama.cpp's n_ubatch, bounded by batch and context)."""
    return min(options.n_ubatch or options.n_batch, options.n_batch, options.n_ctx)


def activation_bytes(shape: ModelShape, n_ubatch: int) -> int:
    """One micro-batch's activations on a device that computes layers."""
    return n_ubatch * (4 * shape.n_embd + 3 * shape.n_ff) * 4


def kv_layer_bytes(shape: ModelShape, heads: int, cells: int, per_elem: float) -> float:
    """One layer's K and V cache for `cells` cells of `per_elem` bytes."""
    return heads * (shape.key_dim + shape.value_dim) * cells * per_elem


WORKER_BASE_BYTES = 1 << 30  # Python, llama.cpp's libraries and their heaps, beside the model


def worker_memory_limit(estimate: MemoryEstimate) -> int:
    """The data limit a worker gets: three times what the pre-flight expects, plus the process's own
    base, so only a runaway allocation (a lying file, a bug) reaches it. (Measured here: the bundled
    models' workers use 1.0-1.8x the estimate in data, at 4096 and 32768 tokens of context.)"""
    return 3 * estimate.total_bytes + WORKER_BASE_BYTES


class ShapeError(OndeviceError):
    """A model's shape (from a GGUF header, a profile or a checkpoint) holds an impossible number."""


# Far above any real model, far below what would exhaust memory when something is sized by them.
LIMITS = {"layers": 4096, "heads": 65536, "vocab": 1 << 24, "size": 2**31 - 1}


def bounded(what: str, value: Any, limit: int) -> int:
    """`value` as a non-negative int of at most `limit`, else ShapeError saying which number is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        raise ShapeError(f"{what} is {value!r}, not a number")
    if not 0 <= value <= limit:
        raise ShapeError(f"{what} is {value}, outside 0 .. {limit}")
    return int(value)


def _per_layer(value: Any, n_layer: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(bounded("a per-layer head count", v, LIMITS["heads"]) for v in value[:n_layer])
    return (bounded("a head count", value, LIMITS["heads"]),) * n_layer


def _first(value: Any) -> int:
    return int(max(value)) if isinstance(value, (list, tuple)) and value else int(value)


def _swa_layers(n_layer: int, window: int, pattern: int) -> tuple[bool, ...]:
    """llama.cpp's set_swa_pattern: with pattern N, layer il slides unless (il + 1) % N == 0."""
    if not window:
        return (False,) * n_layer
    if not pattern:
        return (True,) * n_layer
    return tuple((il + 1) % pattern != 0 for il in range(n_layer))


def _token_count(summary: GGUFSummary) -> int:
    tokens = summary.metadata.get("tokenizer.ggml.tokens")
    length = getattr(tokens, "length", None)
    if length is not None:
        return int(length)
    return len(tokens) if isinstance(tokens, list) else 0
