"""The CPU as an RPC server's device, optionally offering less memory than the machine has.

Loaded only in the RPC-server child (it loads llama.cpp). llama.cpp's rpc-server reports the CPU's
free memory to clients, who split layers in proportion to it; to offer a set amount (`--mem`) the
server gets a copy of the CPU device whose memory query answers that amount. The copy's layouts are
ggml-backend-impl.h's (struct ggml_backend_device and struct ggml_backend of the pinned llama.cpp);
a mismatch is detected and refused, never guessed.
"""

from __future__ import annotations

import ctypes
from typing import Any

from ..errors import OndeviceError
from .llama_ggml import START_SERVER, lib, rpc_proc

DEVICE_TYPE_CPU = 0  # GGML_BACKEND_DEVICE_TYPE_CPU
_IFACE_SLOTS = 15  # function pointers in struct ggml_backend_device_i
_GET_MEMORY, _INIT_BACKEND = 2, 5  # their slots
_BACKEND_DEVICE_SLOT = 17  # struct ggml_backend: guid, 16 function pointers, then device

GET_MEMORY = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)
)
INIT_BACKEND = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)


class _Device(ctypes.Structure):
    _fields_ = [
        ("iface", ctypes.c_void_p * _IFACE_SLOTS),
        ("reg", ctypes.c_void_p),
        ("context", ctypes.c_void_p),
    ]


_keep: list[object] = []  # the callbacks and the device copy must outlive the server


def _offering(cpu: int, memory: int) -> int:
    """A copy of the CPU device that reports `memory` bytes (at most what is free) to clients."""
    device = _Device.from_buffer_copy(ctypes.string_at(cpu, ctypes.sizeof(_Device)))
    real_memory = GET_MEMORY(device.iface[_GET_MEMORY])
    real_init = INIT_BACKEND(device.iface[_INIT_BACKEND])
    address = ctypes.addressof(device)

    @GET_MEMORY
    def get_memory(dev: int | None, free: Any, total: Any) -> None:
        real_memory(cpu, free, total)
        free[0] = min(free[0], memory)
        total[0] = memory

    @INIT_BACKEND
    def init_backend(dev: int | None, params: bytes | None) -> int | None:
        backend = real_init(cpu, params)
        if backend:
            slots = ctypes.cast(backend, ctypes.POINTER(ctypes.c_void_p))
            if slots[_BACKEND_DEVICE_SLOT] != cpu:  # not the layout we know: refuse, never scribble
                print("this llama.cpp's backend layout is not the one --mem knows", flush=True)
                return None
            slots[_BACKEND_DEVICE_SLOT] = address  # memory queries through the backend reach the copy
        return backend

    device.iface[_GET_MEMORY] = ctypes.cast(get_memory, ctypes.c_void_p).value
    device.iface[_INIT_BACKEND] = ctypes.cast(init_backend, ctypes.c_void_p).value
    _keep.extend([device, get_memory, init_backend, real_memory, real_init])
    return address


def start_server(endpoint: str, threads: int, memory_bytes: int | None, cache_dir: str | None) -> None:
    """Serve on `endpoint` (HOST:PORT) until killed (llama.cpp's loop), offering `memory_bytes` (None:
    what is free); returns only when the server could not start."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    start = START_SERVER(rpc_proc("ggml_backend_rpc_start_server"))
    cpu = lib().ggml_backend_dev_by_type(DEVICE_TYPE_CPU)
    if not cpu:
        raise OndeviceError("llama.cpp has no CPU device")
    device = _offering(cpu, memory_bytes) if memory_bytes else cpu
    devices = (ctypes.c_void_p * 1)(device)
    cache = cache_dir.encode() if cache_dir else None
    start(endpoint.encode(), cache, threads, 1, ctypes.cast(devices, ctypes.c_void_p))
