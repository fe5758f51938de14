"""RPC test helpers: free loopback ports, real servers that are always stopped, and fake ones.

A fake server is a real TCP listener on 127.0.0.1 that misbehaves one way: it answers HELLO with
another protocol version, or answers like an HTTP server, or never answers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from enum import Enum

import psutil

from ondevice.runtime.rpc_client import CONN_CAPS_SIZE
from ondevice.runtime.rpc_server import RpcServer, ServerConfig
from ondevice.units import parse_size


def free_port() -> int:
    """A port nothing listens on now (the OS picked it; it is closed again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def rpc_servers(count: int, memory: str | int | None = None, threads: int = 1) -> Iterator[list[RpcServer]]:
    """`count` real RPC servers on free loopback ports, stopped (killed) however the block ends."""
    servers: list[RpcServer] = []
    try:
        for _ in range(count):
            size = parse_size(memory) if memory is not None else None
            servers.append(RpcServer(ServerConfig("127.0.0.1", free_port(), threads, size)))
        yield servers
    finally:
        for server in servers:
            server.stop()


def endpoints(servers: list[RpcServer]) -> str:
    return ",".join(str(s.config.endpoint) for s in servers)


def assert_gone(pids: list[int]) -> None:
    """None of these processes is left (a zombie awaiting its parent's wait counts as gone)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    assert not alive, f"processes left behind: {alive}"


class Misbehaviour(str, Enum):
    WRONG_VERSION = "wrong-version"  # HELLO answered with protocol 6.0.0
    HTTP = "http"  # answers like a web server and hangs up
    SILENT = "silent"  # accepts and never says a word


@contextlib.contextmanager
def fake_server(how: Misbehaviour) -> Iterator[int]:
    """A listener on a free loopback port that misbehaves `how`; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        if how is Misbehaviour.SILENT:
            held.append(conn)  # kept open, unanswered, until the block ends
            return
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                request = conn.recv(1 + 8 + CONN_CAPS_SIZE)
                if how is Misbehaviour.HTTP:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                elif request[:1] == bytes([14]):  # HELLO: answer as a protocol 6 server would
                    answer = bytes([6, 0, 0, 0]) + bytes(CONN_CAPS_SIZE)
                    conn.sendall(struct.pack("<Q", len(answer)) + answer)
                    conn.recv(1)  # wait for the client to hang up

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()
