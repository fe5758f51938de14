"""llama.cpp's log inside the worker: kept in memory for error messages, never printed.

Worker process only (it imports llama_cpp). llama.cpp logs hundreds of lines per load; the tail says
why a load failed, and the "buffer size" lines are the only place llama.cpp states its allocations.
"""

from __future__ import annotations

import collections
import ctypes
import re
import sys

import llama_cpp

_LOG_LINES: collections.deque[str] = collections.deque(maxlen=200)
_BUFFER_LINES: list[str] = []  # "CPU KV buffer size = 6.00 MiB" and the like, and "offloaded N/M layers"
# The buffer's name: "CPU", "CPU_Mapped", "CPU_REPACK", or an RPC server's "RPC0[127.0.0.1:50052]".
_BUFFER_SIZE = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers")


@llama_cpp.llama_log_callback
def _log_to_ring(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", errors="replace")
    _LOG_LINES.append(line)
    if "buffer size" in line or "layers to GPU" in line:
        _BUFFER_LINES.append(line)
    if level == 3:  # GGML_LOG_LEVEL_ERROR: also into the worker's log file, read after a crash
        sys.stderr.write(line)


def capture_log() -> None:
    """Route llama.cpp's log here and start a new load's buffer sizes."""
    llama_cpp.llama_log_set(_log_to_ring, ctypes.c_void_p(0))
    _BUFFER_LINES.clear()


def last_log_error() -> str:
    """The last llama.cpp line that says why something failed, for messages about failed loads.

    llama.cpp logs the reason ("error loading model: ... wrong shape ...") and then a generic
    "failed to load model": the reason is the line that says more.
    """
    for line in reversed(_LOG_LINES):
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    for line in reversed(_LOG_LINES):
        if any(word in line.lower() for word in ("error", "failed", "invalid")):
            return line.strip()
    return _LOG_LINES[-1].strip() if _LOG_LINES else ""


def buffer_sizes(lines: list[str]) -> dict[str, int]:
    """Bytes llama.cpp allocated per kind of buffer (model, KV, compute, output), summed over devices.

    llama.cpp has no API for these; its load log states them, one line per device and buffer.
    """
    sizes = {"model": 0, "KV": 0, "compute": 0, "output": 0}
    for line in lines:
        match = _BUFFER_SIZE.search(line)
        if match:
            sizes[match.group(2)] += int(float(match.group(3)) * 1024 * 1024)
    return sizes


def device_buffer_sizes(lines: list[str]) -> dict[str, dict[str, int]]:
    """Bytes per device and kind of buffer: "RPC0[host:port]" for an RPC server's, "CPU" for the rest
    (llama.cpp's CPU buffers have several names: CPU, CPU_Mapped, CPU_REPACK, AMX ...)."""
    devices: dict[str, dict[str, int]] = {}
    for line in lines:
        match = _BUFFER_SIZE.search(line)
        if match:
            name = match.group(1) if match.group(1).startswith("RPC") else "CPU"
            sizes = devices.setdefault(name, {"model": 0, "KV": 0, "compute": 0, "output": 0})
            sizes[match.group(2)] += int(float(match.group(3)) * 1024 * 1024)
    return devices


def logged_device_buffer_sizes() -> dict[str, dict[str, int]]:
    """`device_buffer_sizes` of what llama.cpp logged since `capture_log`."""
    return device_buffer_sizes(_BUFFER_LINES)


def logged_layers_offloaded() -> int:
    """N of llama.cpp's last "offloaded N/M layers to GPU" line (0 when it said none)."""
    for line in reversed(_BUFFER_LINES):
        match = _OFFLOADED.search(line)
        if match:
            return int(match.group(1))
    return 0


def logged_buffer_sizes() -> dict[str, int]:
    """`buffer_sizes` of what llama.cpp logged since `capture_log`."""
    return buffer_sizes(_BUFFER_LINES)
