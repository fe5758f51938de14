"""What this machine is: CPU, memory, GPUs, and whether this llama.cpp build can use them.

:func:`detect_hardware` reads the operating system's own sources (``/proc`` on Linux, ``sysctl`` on
macOS, psutil elsewhere), NVML or ``nvidia-smi`` for NVIDIA GPUs, and a child process that asks
llama-cpp-python whether the build can offload to a GPU. Everything else takes a :class:`Hardware`
value, so tests and "what if" questions inject a described machine instead of the real one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..runtime.build import build_info

__all__ = ["GPU", "Hardware", "detect_hardware"]

# The instruction-set extensions llama.cpp's CPU kernels care about, as /proc/cpuinfo names them.
X86_SIMD = (
    "sse3",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "avx",
    "f16c",
    "fma",
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
)
ARM_SIMD = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
    "fphp": "fp16",
}
# macOS names for the same features (sysctl hw.optional.*).
MAC_SIMD = {
    "hw.optional.neon": "neon",
    "hw.optional.arm.FEAT_DotProd": "dotprod",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.avx1_0": "avx",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.fma": "fma",
    "hw.optional.avx512f": "avx512f",
}
COMMAND_TIMEOUT_S = 5


@dataclass(frozen=True)
class GPU:
    """A discrete GPU (Apple's integrated GPU shares system memory and is described by ``metal``)."""

    name: str
    memory_bytes: int  # total device memory
    driver: str | None = None
    free_memory_bytes: int | None = None  # None when the source does not say
    vendor: str = "nvidia"


@dataclass(frozen=True)
class Hardware:
    """A machine as far as running llama.cpp is concerned."""

    os: str  # platform.system(): "Linux", "Darwin", "Windows"
    os_version: str
    machine: str  # the CPU architecture: "x86_64", "arm64", "aarch64"
    cpu_model: str
    physical_cores: int
    logical_cores: int
    total_ram_bytes: int
    available_ram_bytes: int
    simd: tuple[str, ...] = ()
    apple_silicon: bool = False
    metal: bool = False  # a Metal-capable GPU llama.cpp can use (Apple Silicon)
    gpus: tuple[GPU, ...] = ()
    gpu_offload_supported: bool = False  # llama_cpp.llama_supports_gpu_offload() of this build
    build_info: str = ""  # llama.cpp's system info line (which CPU features and backends it was built with)
    sources: tuple[str, ...] = field(default=(), compare=False)  # where the figures came from

    @property
    def arch(self) -> str:
        return self.machine

    @property
    def nvidia_gpus(self) -> tuple[GPU, ...]:
        return tuple(g for g in self.gpus if g.vendor == "nvidia")

    @property
    def vram_bytes(self) -> int:
        """Memory of the largest discrete GPU (llama.cpp offloads to one device unless told to split)."""
        return max((g.memory_bytes for g in self.gpus), default=0)

    @property
    def unified_memory(self) -> bool:
        """GPU and CPU share RAM: offloaded weights still come out of system memory."""
        return self.apple_silicon

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["simd"] = list(self.simd)
        data["gpus"] = [asdict(g) for g in self.gpus]
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hardware:
        """The inverse of :meth:`as_dict` (for described machines in tests and JSON files)."""
        values = dict(data)
        values["simd"] = tuple(values.get("simd", ()))
        values["gpus"] = tuple(GPU(**g) for g in values.get("gpus", ()))
        values["sources"] = tuple(values.get("sources", ()))
        return cls(**values)


def detect_hardware() -> Hardware:
    """Describe this machine. Never raises for a missing tool: what cannot be read is left empty."""
    system = platform.system()
    sources: list[str] = []
    cpuinfo = _read_text("/proc/cpuinfo") if system == "Linux" else ""
    if cpuinfo:
        sources.append("/proc/cpuinfo")
    cpu_model = _cpu_model(system, cpuinfo)
    logical = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or _physical_from_cpuinfo(cpuinfo) or logical
    total, available = _memory(system, sources)
    apple_silicon = system == "Darwin" and (
        platform.machine() == "arm64" or _sysctl("hw.optional.arm64") == "1"  # also under Rosetta
    )
    gpus = _nvidia_gpus(sources)
    build = build_info()
    return Hardware(
        os=system,
        os_version=_os_version(system),
        machine=platform.machine(),  # x86_64 on Apple Silicon means Python runs under Rosetta
        cpu_model=cpu_model,
        physical_cores=physical,
        logical_cores=logical,
        total_ram_bytes=total,
        available_ram_bytes=available,
        simd=_simd(system, cpuinfo),
        apple_silicon=apple_silicon,
        metal=apple_silicon,
        gpus=gpus,
        gpu_offload_supported=build.gpu_offload,
        build_info=build.system_info or build.error,
        sources=tuple(sources),
    )


def cpu_signature() -> str:
    """This CPU as far as compiled kernels care: its model and the instruction sets it offers."""
    system = platform.system()
    cpuinfo = _read_text("/proc/cpuinfo") if system == "Linux" else ""
    flags = " ".join(sorted(_cpu_flags(cpuinfo))) or ",".join(_simd(system, cpuinfo))
    return f"{platform.machine()} | {_cpu_model(system, cpuinfo)} | {flags}"


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"(\w+):\s+(\d+)(?:\s+kB)?", line)
        if match:
            scale = 1024 if line.rstrip().endswith("kB") else 1
            values[match.group(1)] = int(match.group(2)) * scale
    return values


def _memory(system: str, sources: list[str]) -> tuple[int, int]:
    if system == "Linux":
        info = parse_meminfo(_read_text("/proc/meminfo"))
        if "MemTotal" in info and "MemAvailable" in info:
            sources.append("/proc/meminfo")
            return info["MemTotal"], info["MemAvailable"]
    memory = psutil.virtual_memory()
    sources.append("psutil")
    return memory.total, memory.available


def _cpu_model(system: str, cpuinfo: str) -> str:
    if system == "Darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown"
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or "unknown"


def _physical_from_cpuinfo(cpuinfo: str) -> int:
    """Distinct (physical id, core id) pairs; 0 when /proc/cpuinfo does not say (many ARM kernels)."""
    cores = set()
    for block in cpuinfo.split("\n\n"):
        package = re.search(r"^physical id\s*:\s*(\d+)", block, re.MULTILINE)
        core = re.search(r"^core id\s*:\s*(\d+)", block, re.MULTILINE)
        if package and core:
            cores.add((package.group(1), core.group(1)))
    return len(cores)


def _cpu_flags(cpuinfo: str) -> set[str]:
    """The first CPU's feature flags in /proc/cpuinfo ("flags" on x86, "Features" on ARM)."""
    match = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def _simd(system: str, cpuinfo: str) -> tuple[str, ...]:
    if system == "Darwin":
        return tuple(name for key, name in MAC_SIMD.items() if _sysctl(key) == "1")
    flags = _cpu_flags(cpuinfo)
    if "pni" in flags:
        flags.add("sse3")  # the kernel's name for SSE3
    found = [f for f in X86_SIMD if f in flags]
    found += [name for flag, name in ARM_SIMD.items() if flag in flags]
    return tuple(found)


def _os_version(system: str) -> str:
    if system == "Darwin":
        return platform.mac_ver()[0] or platform.release()
    if system == "Linux":
        with contextlib.suppress(OSError):
            pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.MULTILINE)
            if pretty:
                return f"{pretty.group(1)} (kernel {platform.release()})"
    return platform.release()


def _nvidia_gpus(sources: list[str]) -> tuple[GPU, ...]:
    gpus = _nvml_gpus()
    if gpus is not None:
        sources.append("NVML")
        return gpus
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    query = "--query-gpu=name,memory.total,memory.free,driver_version"
    try:
        out = subprocess.run(
            [smi, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    sources.append("nvidia-smi")
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out: str) -> tuple[GPU, ...]:
    """Rows of ``name, memory.total, memory.free, driver_version`` (MiB, no units)."""
    gpus = []
    for row in out.strip().splitlines():
        parts = [p.strip() for p in row.split(",")]
        if len(parts) != 4:
            continue
        name, total, free, driver = parts
        with contextlib.suppress(ValueError):
            gpus.append(GPU(name, int(float(total)) << 20, driver, int(float(free)) << 20))
    return tuple(gpus)


def _nvml_gpus() -> tuple[GPU, ...] | None:
    """GPUs through NVML (the nvidia-ml-py package), or None when it is not installed or finds no driver."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no driver, no device; nvidia-smi gets its turn
        return None
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                GPU(
                    name.decode() if isinstance(name, bytes) else name,
                    int(memory.total),
                    driver.decode() if isinstance(driver, bytes) else driver,
                    int(memory.free),
                )
            )
        return tuple(gpus)
    finally:
        pynvml.nvmlShutdown()


def _sysctl(key: str) -> str:
    try:
        out = subprocess.run(
            ["sysctl", "-n", key], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
