"""The memory pre-flight across this machine and RPC servers: which layers go where, and do they fit.

llama.cpp (src/llama-model.cpp, load_tensors) keeps the input embeddings on the CPU, offloads the last
`n_gpu_layers` of the n_layer + 1 layers (the output layer counts as one) to the devices, and gives
each device the layers whose position falls in its share: the shares are `tensor_split` or, without
it, each device's free memory. RPC servers are such devices, in the order given. This module repeats
that rule on the GGUF header, so a model that fits nowhere is refused before anything is sent.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from ..gguf_summary import GGUFSummary
from ..runtime.protocol import LoadOptions
from ..runtime.rpc_client import ServerInfo
from ..units import format_bytes
from .hardware import Hardware
from .preflight import (
    KV_TYPE_BYTES,
    RUNTIME_BASE_BYTES,
    VOCAB_BYTES_PER_TOKEN,
    InsufficientMemoryError,
    ModelShape,
    activation_bytes,
    kv_layer_bytes,
    layer_weights,
    micro_batch,
    pad_cells,
)

LOCAL = "CPU"


@dataclass(frozen=True)
class DeviceLoad:
    """One device's part of a split model: its layers and the bytes they need there."""

    device: str  # "CPU" (this machine) or llama.cpp's name for an RPC device: RPC0, RPC1 ...
    where: str  # "this machine" or the server's endpoint
    layers: int  # repeating layers (the output layer is `output`)
    output: bool  # holds the output layer
    needed_bytes: int
    available_bytes: int

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    def describe(self) -> str:
        layers = f"{self.layers} layer{'s' if self.layers != 1 else ''}"
        layers += " + output" if self.output else ""
        return (
            f"{self.device} ({self.where}): {layers}, needs {format_bytes(self.needed_bytes)}, "
            f"{format_bytes(max(self.available_bytes, 0))} available"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "where": self.where,
            "layers": self.layers,
            "output": self.output,
            "needed_bytes": self.needed_bytes,
            "available_bytes": self.available_bytes,
            "fits": self.fits,
        }


@dataclass(frozen=True)
class SplitCheck:
    """A model spread over this machine and RPC servers, held against what each has free."""

    n_ctx: int
    devices: tuple[DeviceLoad, ...]  # this machine first, then the servers' devices in order

    @property
    def fits(self) -> bool:
        return all(d.fits for d in self.devices)

    def plan_lines(self) -> list[str]:
        return [d.describe() for d in self.devices]

    def summary(self) -> str:
        short = [d for d in self.devices if not d.fits]
        return "; ".join(d.describe() for d in (short or self.devices))

    def as_dict(self) -> dict[str, Any]:
        return {"n_ctx": self.n_ctx, "fits": self.fits, "devices": [d.as_dict() for d in self.devices]}


def assign_layers(n_layer: int, n_gpu_layers: int, shares: list[float]) -> list[int | None]:
    """For each of the n_layer + 1 layers (the last is the output layer), the index of the device
    llama.cpp puts it on, or None for this machine's CPU (llama_model::load_tensors' rule)."""
    total_layers = n_layer + 1
    n_gpu = total_layers if n_gpu_layers < 0 else n_gpu_layers
    if not shares or sum(shares) <= 0:
        return [None] * total_layers
    start = max(total_layers - n_gpu, 0)
    active = min(n_gpu, total_layers)
    running, splits = 0.0, []
    for share in shares:
        running += share
        splits.append(running / sum(shares))
    placed: list[int | None] = []
    for layer in range(total_layers):
        if layer < start or layer - start >= active:
            placed.append(None)
        else:
            index = bisect.bisect_right(splits, (layer - start) / active)
            placed.append(min(index, len(shares) - 1))
    return placed


def check_split(
    summary: GGUFSummary,
    options: LoadOptions,
    hw: Hardware,
    headroom: int,
    servers: list[ServerInfo],
) -> SplitCheck:
    """Where each layer goes with these servers, and whether every device has room for its part."""
    shape = ModelShape.from_summary(summary)
    per_layer, output_bytes = layer_weights(summary, shape)
    remote = [
        (f"RPC{index}", str(info.endpoint), free)
        for index, (info, free) in enumerate((i, f) for i in servers for f in i.free_bytes)
    ]
    shares = list(options.tensor_split[: len(remote)]) if options.tensor_split else [r[2] for r in remote]
    shares += [0.0] * (len(remote) - len(shares))
    placed = assign_layers(shape.n_layer, options.n_gpu_layers, [float(s) for s in shares])

    n_ctx = pad_cells(options.n_ctx)
    kv_elem = KV_TYPE_BYTES[options.kv_cache_type]
    activations = activation_bytes(shape, micro_batch(options))  # per device that computes layers
    logits_row = shape.n_vocab * 4
    needed = [0] * (len(remote) + 1)  # index 0: this machine
    layers = [0] * (len(remote) + 1)

    def slot_of(device: int | None) -> int:  # slot 0 is this machine, then the servers in order
        return 0 if device is None else device + 1

    for layer, heads in enumerate(shape.kv_heads):
        slot = slot_of(placed[layer])
        needed[slot] += per_layer[layer] + int(kv_layer_bytes(shape, heads, n_ctx, kv_elem))
        layers[slot] += 1
    out_slot = slot_of(placed[-1])
    embeddings = sum(t.n_bytes for t in summary.tensors if t.name.startswith("token_embd"))
    others = summary.tensor_bytes - sum(per_layer) - embeddings  # output norm and weight, when untied
    if out_slot:
        needed[out_slot] += output_bytes  # a tied output layer gets its own copy of the embeddings
    needed[0] += RUNTIME_BASE_BYTES + shape.n_vocab * VOCAB_BYTES_PER_TOKEN + embeddings
    needed[0] += 0 if out_slot else others
    needed[0] += activations + 2 * logits_row
    for slot in range(1, len(needed)):
        if layers[slot] or out_slot == slot:
            needed[slot] += activations + (logits_row if out_slot == slot else 0)
    here = hw.available_ram_bytes - headroom
    devices = [DeviceLoad(LOCAL, "this machine", layers[0], out_slot == 0, needed[0], here)]
    for slot, (name, where, free) in enumerate(remote, start=1):
        devices.append(DeviceLoad(name, where, layers[slot], out_slot == slot, needed[slot], free))
    return SplitCheck(n_ctx, tuple(devices))


def require_split_fit(check: SplitCheck, what: str, force: bool = False) -> None:
    """Refuse, with every device's numbers, a split that does not fit (unless `force`)."""
    if check.fits or force:
        return
    raise InsufficientMemoryError(
        f"{what} at {check.n_ctx} tokens of context will not fit across this machine and "
        f"{len(check.devices) - 1} RPC device(s): {check.summary()}; use a smaller --ctx, more servers "
        "or a smaller quantization, or --force"
    )
