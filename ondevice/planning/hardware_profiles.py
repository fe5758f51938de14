"""Hardware profiles: how to load models on a kind of machine, and which kind this machine is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.protocol import ExtraBufts, LoadOptions
from ..runtime.rpc_client import parse_endpoints
from ..units import format_bytes, parse_size
from .hardware import Hardware
from .profile_files import INTERNAL, doc, find_profile, list_profiles, load_file

__all__ = [
    "APPLIED_FIELDS",
    "HardwareProfile",
    "Selection",
    "choose_profile",
    "load_hardware_profile",
    "resolve_load_options",
]

LLAMA_CPP_VERSION = "0.3.36"
LOW_MEMORY_BYTES = 6 << 30  # below this much RAM a machine gets the low-memory profile
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")
CUDA_REBUILD = (
    f'CMAKE_ARGS="-DGGML_CUDA=on -DGGML_RPC=on" pip install --force-reinstall --no-cache-dir '
    f"llama-cpp-python=={LLAMA_CPP_VERSION}  (needs the CUDA toolkit: nvcc on PATH)"
)
METAL_REBUILD = (
    f'CMAKE_ARGS="-DGGML_METAL=on -DGGML_RPC=on" pip install --force-reinstall --no-cache-dir '
    f"llama-cpp-python=={LLAMA_CPP_VERSION}  (needs the Xcode command line tools)"
)
# The profile fields that become LoadOptions (memory_headroom is the pre-flight's).
APPLIED_FIELDS = (
    "threads",
    "gpu_layers",
    "batch",
    "ubatch",
    "context",
    "flash_attn",
    "mmap",
    "mlock",
    "kv_cache_type",
    "extra_bufts",
)


@dataclass(frozen=True)
class HardwareProfile:
    """Settings for loading models on one kind of machine (profiles/hardware/NAME.toml)."""

    name: str = field(default="", metadata=INTERNAL)
    path: Path | None = field(default=None, metadata=INTERNAL)
    origin: str = field(default="", metadata=INTERNAL)
    description: str = field(default="", metadata=doc("One line saying which machines this is for."))
    threads: int = field(
        default=0,
        metadata=doc(
            "CPU threads for prompt and generation; 0 means one per physical core.", minimum=0, maximum=512
        ),
    )
    gpu_layers: int = field(
        default=0,
        metadata=doc("Transformer layers offloaded to the GPU: 0 none, -1 all of them.", minimum=-1),
    )
    batch: int = field(
        default=512, metadata=doc("Prompt tokens handed to llama.cpp per decode call (n_batch).", minimum=1)
    )
    ubatch: int = field(
        default=512,
        metadata=doc(
            "Micro-batch: prompt tokens per compute graph (n_ubatch, at most `batch`); sizes the "
            "compute buffers.",
            minimum=1,
        ),
    )
    context: int = field(default=4096, metadata=doc("Context size in tokens (n_ctx).", minimum=16))
    flash_attn: str = field(
        default="auto",
        metadata=doc(
            "Flash attention: auto (llama.cpp decides per backend), on or off. A quantized KV cache "
            "needs it on (or auto where the backend has it).",
            choices=("auto", "on", "off"),
        ),
    )
    mmap: bool = field(
        default=True,
        metadata=doc("Map the model file instead of reading it into memory (faster start, shared pages)."),
    )
    mlock: bool = field(
        default=False,
        metadata=doc("Lock the weights in RAM so they are never swapped out (needs RLIMIT_MEMLOCK)."),
    )
    kv_cache_type: str = field(
        default="f16",
        metadata=doc(
            "Type of the KV cache: f16, q8_0 (about half the memory), q4_0 ...; the memory pre-flight "
            "counts the type chosen.",
            choices=KV_CACHE_TYPES,
        ),
    )
    extra_bufts: str = field(
        default="auto",
        metadata=doc(
            "llama.cpp's extra CPU buffer types (weights repacked for AVX2/AVX-512/NEON, or AMX): on, "
            "off (llama.cpp's --no-repack), or auto: on until they crash this CPU (SIGILL or SIGSEGV, "
            "as AMX kernels do on some Xeons), then off for this machine and build.",
            choices=tuple(e.value for e in ExtraBufts),
        ),
    )
    rpc: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "llama.cpp RPC servers (HOST:PORT, `ondevice rpc-server` on other machines) that take "
            "layers next to this machine's; with servers, gpu_layers 0 means all layers on them.",
        ),
    )
    memory_headroom: str = field(
        default="1G",
        metadata=doc(
            "RAM left free for the system and other programs; the pre-flight refuses a model that "
            "would eat into it. A size: 512M, 1.5G (powers of 1000) or 1GiB (powers of 1024).",
            size=True,
        ),
    )

    @property
    def headroom_bytes(self) -> int:
        return parse_size(self.memory_headroom)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "origin": self.origin,
            "description": self.description,
            "threads": self.threads,
            "gpu_layers": self.gpu_layers,
            "batch": self.batch,
            "ubatch": self.ubatch,
            "context": self.context,
            "flash_attn": self.flash_attn,
            "mmap": self.mmap,
            "mlock": self.mlock,
            "kv_cache_type": self.kv_cache_type,
            "extra_bufts": self.extra_bufts,
            "rpc": list(self.rpc),
            "memory_headroom": self.memory_headroom,
            "applied_fields": list(APPLIED_FIELDS),
        }


def load_hardware_profile(name: str) -> HardwareProfile:
    """A hardware profile by name (the user's replaces the shipped one) or by path to a .toml file."""
    source = find_profile("hardware", name)
    return load_file(
        HardwareProfile, source.path, {"name": source.name, "path": source.path, "origin": source.origin}
    )


def hardware_profiles() -> list[HardwareProfile]:
    return [load_hardware_profile(s.name) for s in list_profiles("hardware")]


@dataclass(frozen=True)
class Selection:
    """The profile picked for a machine, why, and what would let the machine do better."""

    profile: str
    reason: str
    advice: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "reason": self.reason, "advice": list(self.advice)}


def choose_profile(hw: Hardware) -> Selection:
    """Pick the shipped profile that suits ``hw`` (a detected or a described machine)."""
    advice: list[str] = []
    if hw.apple_silicon and hw.machine != "arm64":
        advice.append("Python runs under Rosetta (x86_64): install an arm64 Python to use Metal and NEON")
    nvidia = hw.nvidia_gpus
    if nvidia:
        gpu = max(nvidia, key=lambda g: g.memory_bytes)
        described = f"{gpu.name} with {format_bytes(gpu.memory_bytes)}"
        if hw.gpu_offload_supported:
            return Selection("cuda", f"NVIDIA GPU {described}, and this llama.cpp build can offload to it")
        advice.append(f"this llama-cpp-python build cannot use the {gpu.name}; rebuild it: {CUDA_REBUILD}")
    elif hw.apple_silicon:
        if hw.gpu_offload_supported:
            return Selection(
                "apple-metal",
                f"Apple Silicon ({hw.cpu_model}) with {format_bytes(hw.total_ram_bytes)} unified memory "
                "and a Metal build of llama.cpp",
                tuple(advice),
            )
        advice.append(f"this llama-cpp-python build has no Metal support; rebuild it: {METAL_REBUILD}")
    ram = format_bytes(hw.total_ram_bytes)
    cores = f"{hw.physical_cores} physical cores"
    no_gpu = "no usable GPU" if (nvidia or hw.apple_silicon) else "no GPU"
    if hw.total_ram_bytes < LOW_MEMORY_BYTES:
        reason = f"{no_gpu}, {cores}, only {ram} of RAM (below {format_bytes(LOW_MEMORY_BYTES)})"
        return Selection("low-memory-laptop", reason, tuple(advice))
    return Selection("cpu-laptop", f"{no_gpu}, {cores}, {ram} of RAM", tuple(advice))


def resolve_load_options(profile: HardwareProfile, explicit: dict[str, Any]) -> LoadOptions:
    """LoadOptions from a profile, with every explicitly given option (not None) winning over it.

    ``explicit`` uses LoadOptions' names: n_ctx, n_threads, n_batch, n_gpu_layers, use_mmap,
    extra_bufts, rpc_servers, tensor_split (the profile alone sets n_ubatch, flash_attn, use_mlock and
    kv_cache_type). With RPC servers and no GPU layers asked for, all layers go to the servers.
    """
    known = {
        "n_ctx",
        "n_threads",
        "n_batch",
        "n_gpu_layers",
        "use_mmap",
        "extra_bufts",
        "rpc_servers",
        "tensor_split",
    }
    unknown = set(explicit) - known
    if unknown:
        raise TypeError(f"not LoadOptions fields: {', '.join(sorted(unknown))}")

    def pick(key: str, default: Any) -> Any:
        value = explicit.get(key)
        return default if value is None else value

    servers = pick("rpc_servers", profile.rpc)
    servers = tuple(str(e) for e in parse_endpoints(servers)) if servers else ()
    gpu_layers = pick("n_gpu_layers", profile.gpu_layers)
    if servers and gpu_layers == 0 and explicit.get("n_gpu_layers") is None:
        gpu_layers = -1  # servers given and no layers asked for: they are there to take them all
    return LoadOptions(
        n_ctx=pick("n_ctx", profile.context),
        n_threads=pick("n_threads", profile.threads or None),  # None: the runtime uses physical cores
        n_batch=pick("n_batch", profile.batch),
        n_gpu_layers=gpu_layers,
        use_mmap=pick("use_mmap", profile.mmap),
        n_ubatch=profile.ubatch,
        flash_attn=profile.flash_attn,
        use_mlock=profile.mlock,
        kv_cache_type=profile.kv_cache_type,
        extra_bufts=ExtraBufts(pick("extra_bufts", profile.extra_bufts)),
        rpc_servers=servers,
        tensor_split=tuple(pick("tensor_split", ())),
    )
