"""The parent's side of a model: a backend whose core is one streaming generator.

`WorkerModel` runs llama.cpp in a spawned process. If that process dies (an abort() in llama.cpp,
SIGKILL, out of memory) the parent raises WorkerError with what the worker last logged, and lives on.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil

from ..errors import PromptError, WorkerError
from ..kinds import Kind
from ..prompting import TRANSCRIPT_STOPS, Message, PromptMode
from .protocol import (
    BenchRequest,
    BenchTiming,
    DetokenizeRequest,
    Failed,
    Finished,
    GenerateRequest,
    GenerationParams,
    LoadOptions,
    ModelFacts,
    PromptReady,
    Reply,
    ResetRequest,
    ScoreRequest,
    TokenBatch,
    TokenEvent,
    TokenizeRequest,
)

Event = PromptReady | TokenEvent | Finished


def single_turn(
    kind: Kind, has_template: bool, text: str, params: GenerationParams, system: str | None = None
) -> GenerateRequest:
    """One prompt: an instruct model gets it as a user turn in its template (after `system`, if
    given); a base model gets the text raw, since it has no notion of a system prompt."""
    if kind is Kind.INSTRUCT and has_template:
        messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
        return GenerateRequest(messages, PromptMode.CHAT_TEMPLATE, params)
    return GenerateRequest((Message("user", text),), PromptMode.COMPLETION, params)


def chat_turn(has_template: bool, messages: list[Message], params: GenerationParams) -> GenerateRequest:
    """A conversation: the model's template when it has one, else a plain transcript frame."""
    if has_template:
        return GenerateRequest(tuple(messages), PromptMode.CHAT_TEMPLATE, params)
    params = replace(params, stop=tuple(dict.fromkeys(params.stop + TRANSCRIPT_STOPS)))
    return GenerateRequest(tuple(messages), PromptMode.TRANSCRIPT, params)


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
    return (PromptError if event.kind == "prompt" else WorkerError)(event.message)


class Backend(ABC):
    """A loaded model. Consumers (CLI, benchmarks, TUI) only use this interface."""

    facts: ModelFacts

    @abstractmethod
    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        """Yield PromptReady, then TokenEvents, then one Finished."""

    @abstractmethod
    def cancel(self) -> None:
        """Ask the current generation to stop soon; its Finished says "cancelled"."""

    @abstractmethod
    def close(self) -> None:
        """Release the model."""

    @abstractmethod
    def rss_bytes(self) -> int:
        """Resident memory the model takes now (0 once released)."""

    def generate(self, request: GenerateRequest) -> Finished:
        """Run a request to the end and return its Finished event."""
        finished = None
        for event in self.stream(request):
            if isinstance(event, Finished):
                finished = event
        if finished is None:  # pragma: no cover - stream() always ends with Finished or raises
            raise WorkerError("generation ended without a result")
        return finished

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkerModel(Backend):
    """llama.cpp in a worker process, talked to over a pipe."""

    def __init__(
        self, path: str | Path, options: LoadOptions | None = None, label: str | None = None
    ) -> None:
        self.label = label or Path(path).name
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        fd, self._log_path = tempfile.mkstemp(prefix="ondevice-worker-", suffix=".log")
        os.close(fd)
        from .worker import worker_main

        with _file_backed_stdio():
            self._cancel = ctx.Event()
        self.process = ctx.Process(
            target=worker_main,
            args=(child, str(path), options or LoadOptions(), self._cancel, self._log_path),
            name=f"ondevice-worker:{self.label}",
            daemon=True,
        )
        self._busy = False
        self._stopped: Finished | None = None  # the end of an answer whose consumer stopped reading
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
        self.facts: ModelFacts = first  # type: ignore[assignment]

    # -- plumbing ---------------------------------------------------------------------------

    def _recv(self, doing: str) -> object:
        while True:
            try:
                if self._conn.poll(0.25):
                    return self._conn.recv()
                if self.process.is_alive() or self._conn.poll(0):
                    continue
            except (EOFError, OSError):
                pass
            # The pipe broke or the process is gone; let it finish dying to read its exit code.
            self._busy = False
            self.process.join(timeout=2)
            raise WorkerError(self._death_message(doing))

    def _death_message(self, doing: str) -> str:
        code = self.process.exitcode
        if code is None:
            how = "stopped answering"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        detail = self._log_tail()
        return f"the model worker for {self.label} {how} while {doing}" + (f": {detail}" if detail else "")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = [line.strip() for line in Path(self._log_path).read_text(errors="replace").splitlines()]
            lines = [line for line in lines if line]
            return lines[-1][:300] if lines else ""
        return ""

    def _send(self, request: object, doing: str) -> None:
        try:
            self._conn.send(request)
        except (BrokenPipeError, OSError):
            self.process.join(timeout=2)
            raise WorkerError(self._death_message(doing)) from None

    def _ask(self, request: object, doing: str) -> object:
        if self._busy:
            raise WorkerError(f"{self.label} is busy generating")
        self._send(request, doing)
        reply = self._recv(doing)
        if isinstance(reply, Failed):
            raise _failure(reply)
        if not isinstance(reply, Reply):
            raise WorkerError(f"unexpected reply {type(reply).__name__} while {doing}")
        return reply.value

    # -- the interface ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        if self._busy:
            raise WorkerError(f"{self.label} is busy generating")
        self._cancel.clear()
        self._stopped = None
        self._send(request, "generating")
        self._busy = True
        try:
            while True:
                event = self._recv("generating")
                if isinstance(event, Failed):
                    self._busy = False
                    raise _failure(event)
                if isinstance(event, TokenBatch):
                    yield from event.events
                    continue
                if isinstance(event, Finished):
                    self._busy = False
                yield event  # type: ignore[misc]
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
        while True:
            event = self._recv("stopping")
            if isinstance(event, (Finished, Failed)):
                self._busy = False
                return event if isinstance(event, Finished) else None

    def cancel(self) -> None:
        self._cancel.set()

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = False) -> list[int]:
        return self._ask(TokenizeRequest(text, add_special, parse_special), "tokenizing")  # type: ignore[return-value]

    def detokenize(self, token_ids: list[int] | tuple[int, ...]) -> str:
        return self._ask(DetokenizeRequest(tuple(token_ids)), "detokenizing")  # type: ignore[return-value]

    def reset(self) -> None:
        """Start a new conversation: forget the KV cache."""
        self._ask(ResetRequest(), "resetting")

    def bench(self, test: str, n_tokens: int, n_threads: int | None = None, seed: int = 0) -> BenchTiming:
        """Run one llama-bench test ("pp" or "tg") in the worker; the KV cache is cleared around it."""
        request = BenchRequest(test, n_tokens, n_threads, seed)
        return self._ask(request, f"benchmarking {test}{n_tokens}")  # type: ignore[return-value]

    def score(self, request: ScoreRequest):  # -> ondevice.measure.logprobs.ChunkScores
        """Evaluate one chunk of tokens and return its per-position scores (see ScoreRequest)."""
        return self._ask(request, "scoring a chunk")

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
