"""Detection of this machine agrees with the operating system's own figures."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import pytest

from ondevice.planning.hardware import GPU, Hardware, detect_hardware, parse_meminfo, parse_nvidia_smi

linux = pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc")


@pytest.fixture(scope="module")
def detected() -> Hardware:
    return detect_hardware()


@linux
def test_cpu_agrees_with_proc_cpuinfo_and_cpu_count(detected):
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert detected.logical_cores == os.cpu_count()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if model:
        assert detected.cpu_model == model.group(1).strip()
    cores = {
        (re.search(r"physical id\s*:\s*(\d+)", b).group(1), re.search(r"core id\s*:\s*(\d+)", b).group(1))
        for b in cpuinfo.split("\n\n")
        if "core id" in b and "physical id" in b
    }
    if cores:
        assert detected.physical_cores == len(cores)
    assert 1 <= detected.physical_cores <= detected.logical_cores
    flags = set(re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).split())
    flags |= {"sse3"} if "pni" in flags else set()
    x86 = [
        f for f in detected.simd if f in flags or f not in ("neon", "dotprod", "i8mm", "sve", "sve2", "fp16")
    ]
    assert set(x86) <= flags | {"neon", "dotprod", "i8mm", "fp16"}


@linux
def test_memory_agrees_with_proc_meminfo(detected):
    meminfo = parse_meminfo(Path("/proc/meminfo").read_text())
    assert detected.total_ram_bytes == meminfo["MemTotal"]
    # Available memory moves while the tests run; the same source read moments apart stays close.
    assert abs(detected.available_ram_bytes - meminfo["MemAvailable"]) < 0.1 * meminfo["MemTotal"]
    assert "/proc/meminfo" in detected.sources


def test_gpu_offload_means_a_gpu_of_llama_cpps_own_not_an_rpc_build(detected):
    import ctypes

    import llama_cpp

    llama_cpp.llama_backend_init()
    by_type = llama_cpp.llama_cpp._lib.ggml_backend_dev_by_type
    by_type.argtypes, by_type.restype = [ctypes.c_int], ctypes.c_void_p
    gpu = bool(by_type(1) or by_type(2))  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
    assert detected.gpu_offload_supported == gpu
    # llama_supports_gpu_offload() is true for every RPC build: it cannot pick the profile
    assert llama_cpp.llama_supports_rpc() and llama_cpp.llama_supports_gpu_offload()


def test_nvidia_smi_rows_parse():
    out = "NVIDIA GeForce RTX 4090, 24564, 23000, 550.54.14\nbroken row\n"
    (gpu,) = parse_nvidia_smi(out)
    assert gpu == GPU("NVIDIA GeForce RTX 4090", 24564 << 20, "550.54.14", 23000 << 20)


def test_described_machine_round_trips(detected):
    assert Hardware.from_dict(detected.as_dict()) == detected
