"""ggml's backend registry through ctypes: RPC servers as devices, and the RPC server itself.

Loaded only in a worker or an RPC-server child (it loads llama.cpp's libraries). llama-cpp-python's
`rpc_servers` parameter does nothing since llama.cpp moved RPC to device registration; we register
servers the way llama.cpp's common/arg.cpp does for `--rpc`.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import llama_cpp.llama_cpp as _llama

from ..errors import WorkerError
from .build import RPC_REBUILD

_NO_RPC = f"this llama-cpp-python was built without RPC; rebuild it: {RPC_REBUILD}"

ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)
START_SERVER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p
)


@lru_cache(maxsize=1)
def lib() -> ctypes.CDLL:
    """ggml's registry as libllama sees it: symbols looked up through libllama's own handle.

    Not `llama_cpp._ggml.libggml`: a wheel holds copies, not links, of libggml.so and libggml.so.0, so
    that handle is a second libggml with a registry of its own, which llama.cpp never reads.
    """
    handle = _llama._lib
    handle.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    handle.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    handle.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    handle.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    handle.ggml_backend_register.argtypes = [ctypes.c_void_p]
    handle.ggml_backend_register.restype = None
    handle.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    handle.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    handle.ggml_backend_dev_count.argtypes = []
    handle.ggml_backend_dev_count.restype = ctypes.c_size_t
    return handle


def rpc_proc(name: str) -> int:
    """The address of one of the RPC backend's functions, or WorkerError when the build lacks RPC."""
    reg = lib().ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise WorkerError(_NO_RPC)
    address = lib().ggml_backend_reg_get_proc_address(reg, name.encode())
    if not address:
        raise WorkerError(f"llama.cpp's RPC backend has no {name}")
    return address


def gpu_device_present() -> bool:
    """Whether llama.cpp has a GPU of its own (a GPU or IGPU device); asked before any RPC server is
    registered, since those count as GPUs too (as llama_supports_gpu_offload counts RPC builds)."""
    return bool(lib().ggml_backend_dev_by_type(1) or lib().ggml_backend_dev_by_type(2))


def register_servers(endpoints: tuple[str, ...]) -> None:
    """Make each RPC server's devices llama.cpp devices, before a model loads (as `--rpc` does).

    llama.cpp aborts the process when a server cannot be reached here: the parent checked them first.
    """
    add_server = ADD_SERVER(rpc_proc("ggml_backend_rpc_add_server"))
    for endpoint in endpoints:
        reg = add_server(endpoint.encode())
        if not reg:
            raise WorkerError(f"RPC server {endpoint} has no devices to lend")
        lib().ggml_backend_register(reg)
