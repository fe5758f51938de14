"""llama.cpp's RPC server, run from the installed build in a child process.

The server lends this machine's CPU (its memory and threads) to a model loaded on another machine
with `--rpc`. It is `ggml_backend_rpc_start_server` called through ctypes, as llama.cpp's
tools/rpc/rpc-server.cpp does, in a spawned child: llama.cpp never loads in the caller's process, the
child dies with its parent, and stopping it is killing it (the server has no shutdown call).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import time
from dataclasses import dataclass

from ..errors import OndeviceError
from .lifeline import exit_with_parent, log_file, log_lines, stop_child
from .rpc_client import DEFAULT_PORT, Endpoint, RpcError, ServerInfo, check_server

START_TIMEOUT_S = 60.0
SECURITY_WARNING = (
    "an RPC server has no authentication and no encryption: whoever reaches {where} can run "
    "computations on this machine and read what it holds. Bind it only on a network you trust "
    "(a home LAN behind a router, a VPN), never on one open to others."
)


class RpcServerError(OndeviceError):
    """The RPC server could not start, or stopped."""


@dataclass(frozen=True)
class ServerConfig:
    """How to run one RPC server."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    threads: int = 1
    memory_bytes: int | None = None  # memory offered to clients; None: what the machine has free
    cache_dir: str | None = None  # llama.cpp's tensor cache (rpc-server -c): big tensors load once

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)


class RpcServer:
    """A running RPC server child. `stop()` (or leaving the `with` block) ends it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        _check_free(config)
        self._log_path = log_file("rpc-server")
        ctx = mp.get_context("spawn")
        self.process = ctx.Process(
            target=_serve, args=(config, str(self._log_path)), name=f"ondevice-rpc-server:{config.port}"
        )
        self.process.daemon = True
        self.process.start()
        try:
            self.info = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def _wait_ready(self) -> ServerInfo:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not self.process.is_alive():
                where = self.config.endpoint
                raise RpcServerError(f"the RPC server on {where} did not start: {self.log_tail()}")
            with contextlib.suppress(RpcError):
                return check_server(self.config.endpoint, timeout=2.0)
            if time.monotonic() > deadline:
                raise RpcServerError(
                    f"the RPC server on {self.config.endpoint} did not answer within {START_TIMEOUT_S:g} s"
                )
            time.sleep(0.1)

    def log_tail(self) -> str:
        lines = log_lines(self._log_path)
        return lines[-1] if lines else "it exited without a message"

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the server to end (it runs until stopped); its exit code, None if still running."""
        self.process.join(timeout)
        return self.process.exitcode

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL) and remove its log."""
        stop_child(self.process)
        with contextlib.suppress(OSError):
            self._log_path.unlink()

    def __enter__(self) -> RpcServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_free(config: ServerConfig) -> None:
    """Refuse a port something already listens on (else the readiness check would talk to that)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama.cpp's server socket
        try:
            probe.bind((config.host, config.port))
        except OSError as exc:
            raise RpcServerError(f"cannot listen on {config.endpoint}: {exc.strerror or exc}") from None


def _serve(config: ServerConfig, log_path: str) -> None:
    """In the child: run llama.cpp's server until killed."""
    exit_with_parent()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends the child on Ctrl-C
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    from . import rpc_device  # loads llama.cpp: only here, in the child

    try:
        rpc_device.start_server(str(config.endpoint), config.threads, config.memory_bytes, config.cache_dir)
    except OndeviceError as exc:
        print(exc, flush=True)
        os._exit(1)
    # start_server returns only when it could not serve (llama.cpp printed why, e.g. a bind failure)
    print(f"could not listen on {config.endpoint} (is the port in use?)", flush=True)
    os._exit(1)
