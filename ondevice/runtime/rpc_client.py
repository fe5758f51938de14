"""The few words of llama.cpp's RPC protocol the parent speaks, to check a server before a worker uses it.

A worker registers RPC servers inside llama.cpp, which aborts the whole process when one is
unreachable, is not an RPC server, or speaks another protocol version. So before loading, the parent
connects to every endpoint itself (plain sockets, no llama.cpp): HELLO, then the device count and each
device's memory, and turns each way of failing into one line.

The messages follow ggml/src/ggml-rpc/ggml-rpc.cpp (llama-cpp-python 0.3.36's vendored llama.cpp):
a request is | command (1 byte) | size (8 bytes, little-endian) | data |, an answer | size (8) | data |.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from enum import IntEnum

from ..errors import OndeviceError
from ..hosts import is_loopback
from ..units import format_bytes

PROTO_MAJOR = 7  # RPC_PROTO_MAJOR_VERSION of the llama.cpp this package pins
PROTO_MINOR = 0  # RPC_PROTO_MINOR_VERSION: a server newer in minor than the client is refused
PROTO_PATCH = 0
CONN_CAPS_SIZE = 24  # transport capabilities (RDMA negotiation); zeros ask for plain TCP
DEFAULT_PORT = 50052  # llama.cpp's rpc-server default
CHECK_TIMEOUT_S = 5.0


class Command(IntEnum):
    """The command ids this client sends (enum rpc_cmd)."""

    GET_DEVICE_MEMORY = 11
    HELLO = 14
    DEVICE_COUNT = 15


class RpcError(OndeviceError):
    """An RPC endpoint is malformed, unreachable, not an RPC server, or of another protocol version."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class ServerInfo:
    """What an RPC server says about itself: its protocol version and each device's memory."""

    endpoint: Endpoint
    version: tuple[int, int, int]
    free_bytes: tuple[int, ...]  # per device
    total_bytes: tuple[int, ...]

    @property
    def free(self) -> int:
        return sum(self.free_bytes)

    def describe(self) -> str:
        major, minor, patch = self.version
        return (
            f"{self.endpoint}: RPC v{major}.{minor}.{patch}, {len(self.free_bytes)} device(s), "
            f"{format_bytes(self.free)} free of {format_bytes(sum(self.total_bytes))}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "endpoint": str(self.endpoint),
            "version": ".".join(map(str, self.version)),
            "free_bytes": list(self.free_bytes),
            "total_bytes": list(self.total_bytes),
        }


def parse_endpoint(text: str) -> Endpoint:
    """HOST:PORT as an Endpoint; RpcError on anything else."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RpcError(f"{text!r} is not an RPC endpoint: give HOST:PORT, e.g. 192.168.1.20:{DEFAULT_PORT}")
    if ":" in host:
        raise RpcError(f"{text!r}: llama.cpp's RPC takes an IPv4 address or a host name, not IPv6")
    number = int(port)
    if not 0 < number < 65536:
        raise RpcError(f"{text!r}: the port must be 1 .. 65535")
    return Endpoint(host, number)


def parse_endpoints(text: str | tuple[str, ...] | list[str]) -> tuple[Endpoint, ...]:
    """`--rpc HOST:PORT[,HOST:PORT...]` (or a profile's list) as endpoints, each named once."""
    items = text.split(",") if isinstance(text, str) else list(text)
    endpoints = tuple(parse_endpoint(item) for item in items if item.strip())
    if not endpoints:
        raise RpcError("no RPC endpoint given: --rpc HOST:PORT[,HOST:PORT...]")
    seen: set[Endpoint] = set()
    for endpoint in endpoints:
        if endpoint in seen:
            raise RpcError(f"{endpoint} is named twice in --rpc")
        seen.add(endpoint)
    return endpoints


class _Connection:
    """One socket to a server, with the command framing and exact-length reads."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)

    def close(self) -> None:
        self.sock.close()

    def call(self, command: Command, payload: bytes, answer_size: int) -> bytes:
        self.sock.sendall(struct.pack("<BQ", command, len(payload)) + payload)
        size = struct.unpack("<Q", self._read(8))[0]
        if size != answer_size:
            raise _NotRpc(f"answered {command.name} with {size} bytes, not {answer_size}")
        return self._read(answer_size)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise _NotRpc("closed the connection without answering")
            data += chunk
        return data


class _NotRpc(Exception):
    """The peer does not speak the protocol (internal: becomes an RpcError naming the endpoint)."""


def check_server(endpoint: Endpoint, timeout: float = CHECK_TIMEOUT_S) -> ServerInfo:
    """Connect, say HELLO and ask each device's memory; RpcError with one line when that fails."""
    try:
        conn = _Connection(endpoint, timeout)
    except TimeoutError:
        raise RpcError(f"RPC server {endpoint} did not accept a connection within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise RpcError(
            f"nothing listens at {endpoint}: start `ondevice rpc-server --port {endpoint.port}` there"
        ) from None
    except OSError as exc:
        raise RpcError(f"cannot reach RPC server {endpoint}: {exc.strerror or exc}") from None
    try:
        hello = conn.call(Command.HELLO, bytes(CONN_CAPS_SIZE), 4 + CONN_CAPS_SIZE)
        version = (hello[0], hello[1], hello[2])
        if version[0] != PROTO_MAJOR or version[1] > PROTO_MINOR:
            ours = f"{PROTO_MAJOR}.{PROTO_MINOR}.{PROTO_PATCH}"
            raise RpcError(
                f"RPC server {endpoint} speaks protocol v{'.'.join(map(str, version))}, this llama.cpp "
                f"v{ours}: run the same llama-cpp-python version on both machines"
            )
        (count,) = struct.unpack("<I", conn.call(Command.DEVICE_COUNT, b"", 4))
        if not 0 < count <= 16:
            raise _NotRpc(f"claims {count} devices")
        free, total = [], []
        for device in range(count):
            answer = conn.call(Command.GET_DEVICE_MEMORY, struct.pack("<I", device), 16)
            f, t = struct.unpack("<QQ", answer)
            free.append(f)
            total.append(t)
        return ServerInfo(endpoint, version, tuple(free), tuple(total))
    except TimeoutError:
        raise RpcError(
            f"{endpoint} accepted the connection but did not answer within {timeout:g} s: not an RPC "
            "server, or one busy with another client (it serves one at a time)"
        ) from None
    except (_NotRpc, ConnectionError, OSError) as exc:
        raise RpcError(f"{endpoint} is not an RPC server of this llama.cpp: it {_why(exc)}") from None
    finally:
        conn.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, _NotRpc):
        return str(exc)
    return f"broke the connection ({exc.strerror or exc})" if isinstance(exc, OSError) else str(exc)


def check_servers(endpoints: tuple[Endpoint, ...], timeout: float = CHECK_TIMEOUT_S) -> list[ServerInfo]:
    """`check_server` for each endpoint, in order (the first failure raises)."""
    return [check_server(endpoint, timeout) for endpoint in endpoints]


def reachable(endpoint: Endpoint, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at `endpoint` now (no protocol spoken)."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except OSError:
        return False
