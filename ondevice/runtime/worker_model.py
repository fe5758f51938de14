"""The parent's side of a model worker: llama.cpp in a spawned process, talked to over a pipe.

If that process dies (an abort() in llama.cpp, SIGKILL, out of memory) the parent raises WorkerDied
with what the worker last logged, and lives on.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import psutil

from ..errors import PromptError, WorkerDied, WorkerError
from . import extra_bufts
from .backend import Backend, Event
from .lifeline import log_file, log_lines
from .protocol import (
    Ask,
    BenchRequest,
    BenchTest,
    BenchTiming,
    DetokenizeRequest,
    Failed,
    FailureKind,
    Finished,
    GenerateRequest,
    ImatrixRequest,
    LoadOptions,
    ModelFacts,
    PromptReady,
    R,
    Reply,
    ResetRequest,
    ScoreRequest,
    TokenBatch,
    TokenEvent,
    TokenizeRequest,
)
from .rpc_client import parse_endpoint, reachable

if TYPE_CHECKING:
    from ..imatrix_file import ImatrixEntry
    from .logprobs import ChunkScores

_BUILD_PATH = re.compile(r"\S*/vendor/llama\.cpp/")
STOP_GRACE_S = 10.0  # how long a cancelled answer may take to end before its worker is killed

log = logging.getLogger("ondevice.runtime")


@contextlib.contextmanager
def _file_backed_stdio() -> Iterator[None]:
    """Let multiprocessing see the real stdout and stderr for a moment.

    Starting a worker (and multiprocessing's resource tracker) passes sys.stderr's file descriptor
    to the child; a terminal UI swaps sys.stderr for an object without one, which spawn rejects.
    """
    saved = sys.stdout, sys.stderr
    if sys.__stdout__ is not None and sys.__stderr__ is not None:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _failure(event: Failed) -> Exception:
    return (PromptError if event.kind is FailureKind.PROMPT else WorkerError)(event.message)


class WorkerModel(Backend):
    """llama.cpp in a worker process, talked to over a pipe.

    When a worker dies by a CPU fault with llama.cpp's extra buffer types on, and the options leave
    them to `auto`, the model is loaded again without them and the request is sent again. If it then
    goes through, the verdict is kept for this machine and build (`extra_bufts.Fallback`).
    """

    def __init__(
        self, path: str | Path, options: LoadOptions | None = None, label: str | None = None
    ) -> None:
        self.path = str(path)
        self.label = label or Path(path).name
        self._fallback = extra_bufts.Fallback(options or LoadOptions(), self.label)
        self._busy = False
        self._stopped: Finished | None = None  # the end of an answer whose consumer stopped reading
        try:
            self.facts: ModelFacts = self._start()
        except WorkerDied as died:
            self._recover(died)
        self._fallback.confirm()
        say_adjustments(self.label, self.options, self.facts)

    @property
    def options(self) -> LoadOptions:
        """The options the current worker loaded with (`auto` extra buffer types settled)."""
        return self._fallback.options

    # -- plumbing ---------------------------------------------------------------------------

    def _start(self) -> ModelFacts:
        """Spawn a worker with self.options and wait for it to load the model."""
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._log_path = str(log_file("worker"))
        from .worker import worker_main

        with _file_backed_stdio():
            self._cancel = ctx.Event()
        self.process = ctx.Process(
            target=worker_main,
            args=(child, self.path, self.options, self._cancel, self._log_path),
            name=f"ondevice-worker:{self.label}",
            daemon=True,
        )
        with _file_backed_stdio():
            self.process.start()
        child.close()
        try:
            first = self._recv("loading")
        except BaseException:
            self.close()
            raise
        if isinstance(first, Failed):
            self.close()
            raise WorkerError(first.message)
        if not isinstance(first, ModelFacts):
            self.close()
            raise WorkerError(f"unexpected {type(first).__name__} while loading")
        return first

    def _recover(self, died: WorkerDied) -> None:
        """After the worker died: load again without extra buffer types if they may be the cause,
        else raise (the fallback's verdict)."""
        while True:
            self.close()
            self._fallback.after_death(died)
            try:
                self.facts = self._start()
                return
            except WorkerDied as again:
                died = again

    def _recv(self, doing: str, deadline: float | None = None) -> object:
        while True:
            try:
                if self._conn.poll(0.25):
                    return self._conn.recv()
                if deadline is not None and time.monotonic() > deadline:
                    self.process.kill()  # it ignored a cancel for too long: end it
                if self.process.is_alive() or self._conn.poll(0):
                    continue
            except (EOFError, OSError):
                pass
            # The pipe broke or the process is gone; let it finish dying to read its exit code.
            self._busy = False
            self.process.join(timeout=2)
            raise WorkerDied(self._death_message(doing), self.process.exitcode)

    def _death_message(self, doing: str) -> str:
        code = self.process.exitcode
        if code is None:
            how = "stopped answering"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        lost = self._lost_servers()
        if lost:
            # llama.cpp aborts the process when an RPC server goes away: say which one, not the abort
            servers = ", ".join(lost)
            return (
                f"RPC server {servers} stopped answering while {self.label} was {doing}; the model worker "
                f"{how} (llama.cpp cannot go on without it): restart the server and try again"
            )
        detail = self._log_tail()
        return f"the model worker for {self.label} {how} while {doing}" + (f": {detail}" if detail else "")

    def _lost_servers(self) -> list[str]:
        """The RPC servers this model used that no longer accept a connection."""
        return [e for e in self.options.rpc_servers if not reachable(parse_endpoint(e), timeout=1.0)]

    def _log_tail(self) -> str:
        lines = log_lines(self._log_path)
        # Asserts name the build folder: ".../vendor/llama.cpp/src/a.cpp:1" -> "llama.cpp/src/a.cpp:1"
        return _BUILD_PATH.sub("llama.cpp/", lines[-1])[:300] if lines else ""

    def _send(self, request: object, doing: str) -> None:
        try:
            self._conn.send(request)
        except (BrokenPipeError, OSError):
            self.process.join(timeout=2)
            raise WorkerDied(self._death_message(doing), self.process.exitcode) from None

    def _ask(self, request: Ask[R], doing: str) -> R:
        """Send an Ask request and return its reply's value, typed as the request declares."""
        if self._busy:
            raise WorkerError(f"{self.label} is busy generating")
        while True:
            try:
                self._send(request, doing)
                reply = self._recv(doing)
                break
            except WorkerDied as died:
                self._recover(died)
        self._fallback.confirm()
        if isinstance(reply, Failed):
            raise _failure(reply)
        if not isinstance(reply, Reply):
            raise WorkerError(f"unexpected reply {type(reply).__name__} while {doing}")
        return cast(R, reply.value)

    # -- the interface ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        if self._busy:
            raise WorkerError(f"{self.label} is busy generating")
        self._cancel.clear()
        self._stopped = None
        yielded = False
        try:
            while True:
                try:
                    if not self._busy:
                        self._send(request, "generating")
                        self._busy = True
                    event = self._recv("generating")
                except WorkerDied as died:
                    if yielded:
                        raise
                    # Nothing reached the consumer yet: the same request runs again on a new worker.
                    self._recover(died)
                    continue
                if isinstance(event, Failed):
                    self._busy = False
                    raise _failure(event)
                self._fallback.confirm()
                if isinstance(event, TokenBatch):
                    yielded = True
                    yield from event.events
                    continue
                if not isinstance(event, PromptReady | TokenEvent | Finished):
                    raise WorkerError(f"unexpected {type(event).__name__} while generating")
                if isinstance(event, Finished):
                    self._busy = False
                yielded = True
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            if self._busy:
                # The consumer stopped early (Ctrl-C, an exception): end this generation cleanly.
                self.cancel()
                self._stopped = self.drain()

    def drain(self) -> Finished | None:
        """After a consumer stopped reading, finish the current answer and return its end."""
        if not self._busy:
            stopped, self._stopped = self._stopped, None
            return stopped
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while True:
                event = self._recv("stopping", deadline)
                if isinstance(event, (Finished, Failed)):
                    self._busy = False
                    return event if isinstance(event, Finished) else None
        except WorkerDied:
            return None  # it did not stop in time and was ended (a later request reports that)

    def cancel(self) -> None:
        self._cancel.set()

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = False) -> list[int]:
        return self._ask(TokenizeRequest(text, add_special, parse_special), "tokenizing")

    def detokenize(self, token_ids: list[int] | tuple[int, ...]) -> str:
        return self._ask(DetokenizeRequest(tuple(token_ids)), "detokenizing")

    def reset(self) -> None:
        """Start a new conversation: forget the KV cache."""
        self._ask(ResetRequest(), "resetting")

    def bench(
        self, test: BenchTest | str, n_tokens: int, n_threads: int | None = None, seed: int = 0
    ) -> BenchTiming:
        """Run one llama-bench test in the worker; the KV cache is cleared around it."""
        request = BenchRequest(BenchTest(test), n_tokens, n_threads, seed)
        return self._ask(request, f"benchmarking {request.test.value}{n_tokens}")

    def score(self, request: ScoreRequest) -> ChunkScores:
        """Evaluate one chunk of tokens and return its per-position scores (see ScoreRequest)."""
        return self._ask(request, "scoring a chunk")

    def imatrix(self, request: ImatrixRequest) -> dict[str, ImatrixEntry]:
        """One chunk's importance-matrix sums, from a worker loaded with `collect_imatrix` (a worker
        that dies of the extra-buffer-type crash is replaced and the chunk sent again)."""
        return self._ask(request, "collecting an importance matrix")

    def rss_bytes(self) -> int:
        """The worker's resident memory now (0 once it has gone)."""
        try:
            return psutil.Process(self.pid).memory_info().rss
        except (psutil.Error, ValueError):
            return 0

    def close(self) -> None:
        """End the worker. Safe to call from another thread while one is streaming: the answer is
        cancelled, the worker exits after it, and the streaming thread sees the pipe close."""
        self.cancel()
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(None)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        with contextlib.suppress(OSError):
            self._conn.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log_path)


def say_adjustments(label: str, options: LoadOptions, facts: ModelFacts) -> None:
    """One line for each way llama.cpp loaded the model other than asked, so nothing changes silently."""
    if facts.n_ctx != options.n_ctx:
        log.warning(
            "%s: the context is %d tokens, not the %d asked for (llama.cpp rounds up to a multiple of 256)",
            label,
            facts.n_ctx,
            options.n_ctx,
        )
    if options.n_gpu_layers != 0 and not facts.gpu_offload and not options.rpc_servers:
        log.warning(
            "%s: this llama.cpp build has no GPU backend, so --gpu-layers %d does nothing and the model runs "
            "on the CPU (the README's install section shows the CUDA and Metal builds)",
            label,
            options.n_gpu_layers,
        )
