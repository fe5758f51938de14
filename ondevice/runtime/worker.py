"""The model worker process: owns llama.cpp, so an abort() there kills only this process."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING, Any

from ..errors import OndeviceError, PromptError
from .lifeline import exit_with_parent

if TYPE_CHECKING:
    from .llama_session import LlamaSession  # the module itself loads only in the worker
from .protocol import (
    BenchRequest,
    DetokenizeRequest,
    Failed,
    FailureKind,
    GenerateRequest,
    ImatrixRequest,
    LoadOptions,
    Reply,
    ResetRequest,
    ScoreRequest,
    TokenBatch,
    TokenEvent,
    TokenizeRequest,
)


def worker_main(conn: Connection, path: str, options: LoadOptions, cancel: Event, log_path: str) -> None:
    """Load the model, report its facts, then serve requests until the parent closes the pipe."""
    exit_with_parent()
    # llama.cpp writes asserts straight to fd 2: keep them in a file the parent reads after a crash.
    # Nothing of the worker's goes to the parent's stdout either (it may be a --json answer).
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 2)
    os.dup2(log_fd, 1)
    # Ctrl-C reaches the whole process group; the parent turns it into `cancel` for this worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A crash reads as a message, not as a core file the size of the model in the current folder.
    if os.environ.get("ONDEVICE_DEBUG", "") in ("", "0"):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        # On abort() ggml attaches gdb to print a backtrace: its 60 lines say nothing to a user.
        os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    if options.memory_limit_bytes and hasattr(resource, "RLIMIT_DATA") and sys.platform == "linux":
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        soft = (
            options.memory_limit_bytes
            if hard == resource.RLIM_INFINITY
            else min(options.memory_limit_bytes, hard)
        )
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))

    from .llama_session import LlamaSession  # imported here: llama_cpp loads only in the worker

    try:
        session = LlamaSession(path, options)
    except OndeviceError as exc:
        conn.send(Failed(str(exc)))
        return
    conn.send(session.facts)
    try:
        _serve(conn, session, cancel)
    finally:
        session.close()


def _stream(conn: Connection, events: Iterable[object], send_every: float) -> None:
    pending: list[TokenEvent] = []
    last_sent = 0.0

    def flush() -> None:
        nonlocal last_sent
        if pending:
            conn.send(pending[0] if len(pending) == 1 else TokenBatch(tuple(pending)))
            pending.clear()
            last_sent = time.perf_counter()

    try:
        for event in events:
            if isinstance(event, TokenEvent):
                pending.append(event)
                if time.perf_counter() - last_sent >= send_every:
                    flush()
            else:
                flush()
                conn.send(event)
    finally:  # tokens made before a failure still reach the parent, ahead of the error
        flush()


def _handlers(session: LlamaSession) -> dict[type, Callable[[Any], object]]:
    """What answers each Ask request: one reply value each."""
    return {
        TokenizeRequest: lambda m: session.tokenize(m.text, m.add_special, m.parse_special),
        DetokenizeRequest: lambda m: session.detokenize(list(m.token_ids)),
        ResetRequest: lambda m: session.reset(),
        BenchRequest: session.bench,
        ScoreRequest: session.score,
        ImatrixRequest: session.imatrix,
    }


def _serve(conn: Connection, session: LlamaSession, cancel: Event) -> None:
    handlers = _handlers(session)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        try:
            if isinstance(message, GenerateRequest):
                _stream(conn, session.generate(message, cancel.is_set), message.send_every)
            elif type(message) in handlers:
                conn.send(Reply(handlers[type(message)](message)))
            else:
                conn.send(Failed(f"unknown request {type(message).__name__}"))
        except PromptError as exc:
            conn.send(Failed(str(exc), kind=FailureKind.PROMPT))
        except OndeviceError as exc:
            conn.send(Failed(str(exc)))
