"""The parent's side of a model: a backend whose core is one streaming generator.

`WorkerModel` runs llama.cpp in a spawned process. If that process dies (an abort() in llama.cpp,
SIGKILL, out of memory) the parent raises WorkerError with what the worker last logged, and lives on.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import psutil

from ..errors import PromptError, WorkerError
from ..kinds import Kind
from ..prompting import TRANSCRIPT_STOPS, Message, PromptMode
from . import build, extra_bufts
from .lifeline import log_file
from .protocol import (
    Ask,
    BenchRequest,
    BenchTiming,
    DetokenizeRequest,
    ExtraBufts,
    Failed,
    Finished,
    GenerateRequest,
    GenerationParams,
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

if TYPE_CHECKING:
    from ..refs import ResolvedModel
    from .logprobs import ChunkScores

Event = PromptReady | TokenEvent | Finished
log = logging.getLogger("ondevice.runtime")


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

    # What consumers use beyond generation. A backend that cannot do one says so when asked.

    def drain(self) -> Finished | None:
        """After a consumer stopped reading a stream, finish that answer and return its end."""
        return None

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = False) -> list[int]:
        raise WorkerError(f"{type(self).__name__} cannot tokenize")

    def detokenize(self, token_ids: list[int] | tuple[int, ...]) -> str:
        raise WorkerError(f"{type(self).__name__} cannot detokenize")

    def reset(self) -> None:
        """Start a new conversation: forget the KV cache."""
        return None  # a backend that keeps no cache has nothing to forget

    def bench(self, test: str, n_tokens: int, n_threads: int | None = None, seed: int = 0) -> BenchTiming:
        """One llama-bench test ("pp" or "tg") on an empty KV cache."""
        raise WorkerError(f"{type(self).__name__} cannot benchmark")

    def score(self, request: ScoreRequest) -> ChunkScores:
        """Evaluate one chunk of tokens and return its per-position scores (see ScoreRequest)."""
        raise WorkerError(f"{type(self).__name__} cannot score")

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


def open_model(
    model: ResolvedModel | str | Path, options: LoadOptions | None = None, label: str | None = None
) -> Backend:
    """Load a model (a resolved reference, or a GGUF path) in its own worker process: the one way the
    CLI, the measurements and the UI open a model."""
    if isinstance(model, str | Path):
        return WorkerModel(model, options, label)
    return WorkerModel(model.path, options, label or model.display_name)


class WorkerDied(WorkerError):
    """The worker process ended while working (the exit status says how)."""

    def __init__(self, message: str, exitcode: int | None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(-self.exitcode).name if self.exitcode and self.exitcode < 0 else None


# How llama.cpp's extra-buffer CPU kernels die where they break: SIGILL on an instruction the process may
# not run, or a general protection fault (SIGSEGV) on a bad tile configuration.
CPU_FAULTS = ("SIGILL", "SIGSEGV", "SIGBUS")
_BUILD_PATH = re.compile(r"\S*/vendor/llama\.cpp/")
STOP_GRACE_S = 10.0  # how long a cancelled answer may take to end before its worker is killed
_announced: set[str] = set()  # builds whose fallback notice this process gave already
_announce_lock = threading.Lock()  # views open several models at once, each from its own thread


class WorkerModel(Backend):
    """llama.cpp in a worker process, talked to over a pipe.

    When a worker dies by a CPU fault with llama.cpp's extra buffer types on, and the options leave
    them to `auto`, the model is loaded again without them and the request is sent again. If it then
    goes through, the verdict is kept for this machine and build (`ondevice.runtime.extra_bufts`).
    """

    def __init__(
        self, path: str | Path, options: LoadOptions | None = None, label: str | None = None
    ) -> None:
        self.path = str(path)
        self.label = label or Path(path).name
        self.requested = options or LoadOptions()
        self.options = extra_bufts.settle(self.requested)
        self._busy = False
        self._stopped: Finished | None = None  # the end of an answer whose consumer stopped reading
        self._suspect: str | None = None  # the signal that made us turn extra buffer types off
        try:
            self.facts: ModelFacts = self._start()
        except WorkerDied as died:
            self._recover(died)
        self._confirm()

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
        else raise (with the rebuild command where the build itself does not fit this CPU)."""
        while True:
            self._turn_off_extra_bufts(died)
            try:
                self.facts = self._start()
                return
            except WorkerDied as again:
                died = again

    def _turn_off_extra_bufts(self, died: WorkerDied) -> None:
        self.close()
        name = died.signal_name
        if name not in CPU_FAULTS:
            raise died
        if self.options.extra_bufts is ExtraBufts.OFF:
            also = " (also with llama.cpp's extra buffer types off)" if self._suspect else ""
            self._suspect = None
            if name == "SIGILL":
                raise WorkerError(
                    f"{died}{also}: llama.cpp ran an instruction this CPU lacks, so this build of "
                    f"llama-cpp-python does not match this CPU; rebuild it: {build.REBUILD}"
                ) from None
            raise WorkerDied(f"{died}{also}", died.exitcode) from None
        if self.requested.extra_bufts is ExtraBufts.ON:
            raise WorkerError(
                f"{died}. On some CPUs (Intel Xeons with AMX) llama.cpp's extra buffer types crash this "
                "way: load with --extra-bufts auto or off"
            ) from None
        self._suspect = name
        self.options = replace(self.options, extra_bufts=ExtraBufts.OFF)

    def _confirm(self) -> None:
        """The work that crashed went through without extra buffer types: remember it, say it once."""
        if self._suspect is None:
            return
        name, self._suspect = self._suspect, None
        verdict = extra_bufts.record_crash(
            f"a worker died by {name} with them on ({self.label}) and ran without them"
        )
        with _announce_lock:
            first = verdict.build not in _announced
            _announced.add(verdict.build)
        if first:
            log.warning(
                "llama.cpp's extra CPU buffer types crashed on this CPU (%s in its AMX or repacked kernels); "
                "loading without them from now on: %s (see `ondevice doctor`)",
                name,
                extra_bufts.COST,
            )

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
        detail = self._log_tail()
        return f"the model worker for {self.label} {how} while {doing}" + (f": {detail}" if detail else "")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = [line.strip() for line in Path(self._log_path).read_text(errors="replace").splitlines()]
            lines = [line for line in lines if line]
            # Asserts name the build folder: ".../vendor/llama.cpp/src/a.cpp:1" -> "llama.cpp/src/a.cpp:1"
            return _BUILD_PATH.sub("llama.cpp/", lines[-1])[:300] if lines else ""
        return ""

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
        self._confirm()
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
                self._confirm()
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

    def bench(self, test: str, n_tokens: int, n_threads: int | None = None, seed: int = 0) -> BenchTiming:
        """Run one llama-bench test ("pp" or "tg") in the worker; the KV cache is cleared around it."""
        request = BenchRequest(test, n_tokens, n_threads, seed)
        return self._ask(request, f"benchmarking {test}{n_tokens}")

    def score(self, request: ScoreRequest) -> ChunkScores:
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
