"""The machine a measurement ran on, recorded with each run."""

from __future__ import annotations

from typing import Any

from ..planning.hardware import detect_hardware
from ..runtime import build


def machine_record() -> dict[str, Any]:
    """CPU model, cores, RAM, OS and GPUs, as ondevice.planning.hardware detects them."""
    hw = detect_hardware()
    return {
        "os": f"{hw.os} {hw.os_version}".strip(),
        "arch": hw.machine,
        "cpu_model": hw.cpu_model,
        "physical_cores": hw.physical_cores,
        "logical_cores": hw.logical_cores,
        "total_ram_bytes": hw.total_ram_bytes,
        "available_ram_bytes": hw.available_ram_bytes,
        "gpus": [{"name": g.name, "memory_bytes": g.memory_bytes} for g in hw.gpus],
        "gpu_offload_supported": hw.gpu_offload_supported,
    }


def llama_cpp_version() -> str:
    return build.version()


def backend_name(system_info: str) -> str:
    """llama-bench's backend column from llama.cpp's system info ("CUDA", "Metal", else "CPU")."""
    sections = [part.split(" : ")[0].strip() for part in system_info.split("|") if " : " in part]
    others = [s for s in dict.fromkeys(sections) if s and s != "CPU"]
    return ",".join(others) if others else "CPU"
