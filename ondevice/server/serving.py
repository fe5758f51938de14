"""Serving the app on a socket with uvicorn, and stopping cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from ..errors import OndeviceError
from .pool import SHUTDOWN_GRACE_S, ModelPool

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
START_TIMEOUT_S = 30.0


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (port 0: a free one), or one line saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OndeviceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OndeviceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Server(uvicorn.Server):
    """uvicorn's server, told when a stop signal arrives so that answers in progress end at once (their
    streams close with a finish reason and [DONE]), and without re-raising that signal at the end: a
    signal is how a server is meant to stop, so it exits 0."""

    def __init__(self, config: uvicorn.Config, pool: ModelPool) -> None:
        super().__init__(config)
        self.pool = pool
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Stop from any thread: no new work, answers in progress cancelled, then uvicorn's shutdown."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self.loop.call_soon_threadsafe(self.pool.begin_shutdown)
        self.should_exit = True


def make_server(app: Starlette, pool: ModelPool, log_level: str = "warning") -> Server:
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level in ("info", "debug", "trace"),
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        lifespan="on",
    )
    return Server(config, pool)


def serve(
    app: Starlette,
    pool: ModelPool,
    sock: socket.socket,
    on_started: Callable[[], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until Ctrl-C or SIGTERM, then stop every worker and return."""
    server = make_server(app, pool, log_level)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and on_started is not None:
            on_started()
        await task

    asyncio.run(main())


@contextlib.contextmanager
def serving_in_thread(app: Starlette, pool: ModelPool, host: str = "127.0.0.1") -> Iterator[str]:
    """The app served by uvicorn in a thread of this process on a free port (tests, benchmarks); yields
    its base URL and stops the server and every worker on the way out."""
    sock = listen(host, 0)
    server = make_server(app, pool)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="ondevice-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.stop()
            raise OndeviceError(f"the server on {url_of(sock)} did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.stop()
        thread.join(60)
        if thread.is_alive():
            raise OndeviceError(f"the server on {url_of(sock)} did not stop")
