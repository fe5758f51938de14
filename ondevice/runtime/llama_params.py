"""Our LoadOptions as llama.cpp's model and context parameters.

Worker process only (it imports llama_cpp).
"""

from __future__ import annotations

import ctypes
import os

import llama_cpp
import psutil

from ..errors import WorkerError
from .llama_log import last_log_error
from .protocol import LoadOptions


def default_threads() -> int:
    """One thread per physical core: llama.cpp's decode gains nothing from hyper-threads."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


_FLASH_ATTN = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


def _load_mode(options: LoadOptions) -> int:
    if options.use_mlock:
        return llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK if options.use_mmap else llama_cpp.LLAMA_LOAD_MODE_MLOCK
    return llama_cpp.LLAMA_LOAD_MODE_MMAP if options.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE


def _kv_type(name: str) -> int:
    value = getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", None)
    if value is None:
        raise WorkerError(f"unknown KV-cache type {name!r}")
    return value


def model_params(options: LoadOptions, extra_bufts: bool) -> llama_cpp.llama_model_params:
    """How to load the weights: GPU layers, mmap and mlock, and the extra CPU buffer types on or off."""
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = options.n_gpu_layers
    mparams.load_mode = _load_mode(options)
    mparams.use_extra_bufts = extra_bufts
    if options.tensor_split:
        shares = list(options.tensor_split)[: llama_cpp.LLAMA_MAX_DEVICES]
        split = (ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*shares)
        mparams.tensor_split = split  # ctypes keeps the array alive with the struct
    return mparams


def context_params(options: LoadOptions, threads: int) -> llama_cpp.llama_context_params:
    """The context: its size, batch sizes (never above the context), attention, KV-cache type, threads."""
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = options.n_ctx
    cparams.n_batch = min(options.n_batch, options.n_ctx)
    cparams.n_ubatch = min(options.n_ubatch or options.n_batch, cparams.n_batch)
    cparams.flash_attn_type = _FLASH_ATTN[options.flash_attn]
    cparams.type_k = cparams.type_v = _kv_type(options.kv_cache_type)
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    return cparams


def limit_note(options: LoadOptions) -> str:
    """Why an allocation may have failed: the worker's memory limit, when one was set."""
    if options.memory_limit_bytes and "alloc" in last_log_error():
        return (
            f" (the worker may use {options.memory_limit_bytes / (1 << 30):.1f} GiB, three times the "
            "memory pre-flight's estimate; --force loads without that limit)"
        )
    return ""
