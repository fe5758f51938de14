"""Which llama.cpp this is, asked without loading it into this process.

llama.cpp built for another CPU dies by SIGILL as soon as its code runs, so the CLI and the UI never
import it: the build's facts come from a short-lived child and are kept per build in the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from ..atomic import write_text_atomic
from ..locations import state_dir

PACKAGE = "llama-cpp-python"
PINNED_VERSION = "0.3.36"
# --no-cache-dir: pip would otherwise reuse a cached wheel (perhaps built for another CPU, or without RPC).
RPC_REBUILD = (
    f'CMAKE_ARGS="-DGGML_RPC=on" pip install --no-cache-dir --force-reinstall {PACKAGE}=={PINNED_VERSION}'
)
REBUILD = RPC_REBUILD  # RPC stays on whatever the rebuild is for

PROBE_TIMEOUT_S = 60
_PROBE = (
    "import json, llama_cpp\n"
    # Not llama_supports_gpu_offload(): it is true for any RPC build.
    "from ondevice.runtime.llama_ggml import gpu_device_present\n"
    "rpc = bool(llama_cpp.llama_supports_rpc())\n"
    "print(json.dumps({'gpu_offload': gpu_device_present(), 'rpc': rpc,"
    " 'system_info': llama_cpp.llama_print_system_info().decode(errors='replace').strip()}))"
)


def version() -> str:
    """llama-cpp-python's version, from its metadata (importing it would load llama.cpp)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def library_dir() -> Path | None:
    """The folder holding llama.cpp's shared libraries (libllama, libggml-*), without importing it."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("llama_cpp")
        if spec is not None and spec.origin:
            lib = Path(spec.origin).parent / "lib"
            return lib if lib.is_dir() else None
    return None


@lru_cache(maxsize=1)
def build_id() -> str:
    """Names this build: the version and the libraries' names, sizes and times (a rebuild changes them)."""
    digest = hashlib.sha256(version().encode())
    lib = library_dir()
    if lib is not None:
        for path in sorted(lib.iterdir()):
            with contextlib.suppress(OSError):
                stat = path.stat()
                digest.update(f"|{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{version()}+{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class BuildInfo:
    """What the build says about itself, or why it could not say."""

    build: str
    gpu_offload: bool = False
    system_info: str = ""
    error: str = ""  # empty when the child answered
    rpc: bool = False  # built with GGML_RPC: it can use and be an RPC server

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _cache_path() -> Path:
    return state_dir() / "llama-build.json"


def _probe() -> BuildInfo:
    build = build_id()
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return BuildInfo(build, error=f"importing llama_cpp took over {PROBE_TIMEOUT_S} s")
    except OSError as exc:
        return BuildInfo(build, error=f"could not start Python to ask llama.cpp: {exc}")
    if out.returncode < 0:
        name = signal.Signals(-out.returncode).name
        why = f"llama.cpp was killed by {name} when loaded"
        if -out.returncode == signal.SIGILL:
            why += f": this build does not match this CPU; rebuild it: {REBUILD}"
        return BuildInfo(build, error=why)
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return BuildInfo(build, bool(data["gpu_offload"]), str(data["system_info"]), rpc=bool(data["rpc"]))
    except (IndexError, KeyError, TypeError, ValueError):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return BuildInfo(build, error=f"llama_cpp does not import: {last[:300]}")


@lru_cache(maxsize=1)
def build_info() -> BuildInfo:
    """This build's GPU offload support and system info, asked of a child once per build."""
    build = build_id()
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        cached = json.loads(_cache_path().read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("build") == build and not cached.get("error"):
            rpc = bool(cached["rpc"])  # a cache from before RPC was asked lacks it: ask again
            return BuildInfo(build, bool(cached["gpu_offload"]), str(cached["system_info"]), rpc=rpc)
    info = _probe()
    if not info.error:  # a failure is asked again next time: it may be mended by then
        with contextlib.suppress(OSError):
            write_text_atomic(_cache_path(), json.dumps(info.as_dict(), indent=2))
    return info
