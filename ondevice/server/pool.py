"""The served models: each loads in its own worker on first use (after the memory pre-flight), answers
one generation at a time with a bounded queue behind it, and unloads after the keep-alive time.

Workers are blocking (`Backend.stream` is a generator that waits on a pipe), so each generation runs
on a thread of its own and hands its events to the event loop through a queue (`Generation`).
Nothing here knows HTTP: the routes (app.py) turn this module's exceptions into responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import OndeviceError, UnknownReferenceError, WorkerDied, WorkerError
from ..refs import ResolvedModel, resolve
from ..runtime.engine import Backend, Event, open_model
from ..runtime.protocol import Finished, GenerateRequest, LoadOptions, PromptReady
from ..store import Store

log = logging.getLogger("ondevice.server")

OpenBackend = Callable[[ResolvedModel, LoadOptions], Backend]
OptionsFor = Callable[[ResolvedModel], LoadOptions]  # the memory pre-flight: raises when it will not fit
FindModel = Callable[[str], ResolvedModel]  # a name clients ask for -> a model (UnknownReferenceError)

DEFAULT_KEEP_ALIVE = "5m"
DEFAULT_QUEUE_SIZE = 8
SHUTDOWN_GRACE_S = 15.0  # how long closing waits for cancelled answers to end

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(text: str) -> float | None:
    """Ollama's keep-alive: a duration ("30s", "5m", "1h30m") or plain seconds ("300"). 0 unloads a
    model as soon as its request ends; a negative value keeps it loaded (None: forever)."""
    value = text.strip().lower()
    negative = value.startswith("-")
    body = value.removeprefix("-")
    try:
        seconds = float(body)
    except ValueError:
        parts = _DURATION.findall(body)
        if not parts or "".join(n + u for n, u in parts) != body:
            raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h, 0, -1)") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h, 0, -1)")
    return None if negative and seconds > 0 else seconds


class ModelNotFound(OndeviceError):
    """A request named a model this server does not have."""


class QueueFull(OndeviceError):
    """The model is busy and its queue is full; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(OndeviceError):
    """The server is stopping and takes no new work."""


def find_in_store(name: str) -> ResolvedModel:
    """A store name (NAME or NAME:QUANT) a client asked for. Paths and other sources are refused: a
    client may not make the server open an arbitrary file or pull anything."""
    if (
        not name
        or "/" in name
        or "\\" in name
        or name.endswith(".gguf")
        or name.startswith(("bundled:", "hf:"))
    ):
        raise UnknownReferenceError(f"no model {name!r} is served here")
    return resolve(name)


def store_listing() -> list[tuple[str, dict[str, Any]]]:
    """Every model in the store, as (the name clients use, what it is)."""
    return [
        (entry.manifest.ref, {"kind": entry.manifest.kind.value, "quant": entry.manifest.quant})
        for entry in Store().entries()
    ]


@dataclass
class Slot:
    """One model: its worker (when loaded), its turn-taking and its figures."""

    model: ResolvedModel
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held by the request whose turn it is
    backend: Backend | None = None
    loading: asyncio.Future[Backend] | None = None
    generation: Generation | None = None
    waiting: int = 0
    requests_served: int = 0
    loads: int = 0
    crashes: int = 0
    last_used: float = field(default_factory=time.monotonic)
    seconds_per_request: float = 0.0  # a moving average, for Retry-After


class _End:
    """What a Generation's queue gets last."""


_END = _End()


class Generation:
    """One request running in its model's worker, on a thread; the event loop reads its events."""

    def __init__(
        self, backend: Backend, request: GenerateRequest, on_end: Callable[[BaseException | None], None]
    ):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event | BaseException | _End] = asyncio.Queue()
        self._backend = backend
        self._on_end = on_end
        self.ended = False  # set on the thread before the model is handed to anyone else
        self.done = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run, args=(request,), name="ondevice-serve-generation", daemon=True
        )
        self._thread.start()

    def _run(self, request: GenerateRequest) -> None:
        error: BaseException | None = None
        try:
            for event in self._backend.stream(request):
                self._call(self._queue.put_nowait, event)
        except Exception as exc:  # the request's handler answers with it
            error = exc
            self._call(self._queue.put_nowait, exc)
        finally:
            self.ended = True
            self._call(self._finish, error)

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _finish(self, error: BaseException | None) -> None:
        # One step on the loop: the model is handed on before the reader sees the end, so a client
        # that got its answer finds the figures counted and the model free.
        self.done.set()
        self._on_end(error)
        self._queue.put_nowait(_END)

    def cancel(self) -> None:
        """Stop the answer soon (its Finished says "cancelled"); nothing once it has ended, so a
        late cancel never reaches the next request on the same model."""
        if not self.ended:
            self._backend.cancel()

    async def prompt_ready(self) -> PromptReady:
        """The first event: the prompt as the model got it; raises what the worker raised (a prompt
        longer than the context, a template that failed, a crash)."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if not isinstance(item, PromptReady):
            raise WorkerError("the answer ended before its prompt was ready")
        return item

    async def batches(self) -> AsyncIterator[list[Event]]:
        """The events after the prompt, in batches of what has arrived since the last one; an
        exception from the worker is raised after the events before it."""
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            batch: list[Event] = []
            for item in items:
                if isinstance(item, _End):
                    if batch:
                        yield batch
                    return
                if isinstance(item, BaseException):
                    if batch:
                        yield batch
                    raise item
                batch.append(item)
            yield batch

    async def finished(self) -> Finished:
        """Read to the end and return the Finished event."""
        finished = None
        async for batch in self.batches():
            for event in batch:
                if isinstance(event, Finished):
                    finished = event
        if finished is None:
            raise WorkerError("the answer ended without a result")
        return finished


class Lease:
    """A request's turn at one model, from the queue until its generation ends."""

    def __init__(self, pool: ModelPool, slot: Slot) -> None:
        self._pool = pool
        self._slot = slot
        self._released = False
        self._started = time.monotonic()

    @property
    def model(self) -> ResolvedModel:
        return self._slot.model

    async def backend(self) -> Backend:
        """The model's worker, loaded now if it is not (the pre-flight may refuse it)."""
        return await self._pool._load(self._slot)

    def generate(self, request: GenerateRequest) -> Generation:
        """Start the answer; the turn ends (and the next request's begins) when it has ended."""
        backend = self._slot.backend
        if backend is None:
            raise WorkerError(f"{self.model.display_name} is not loaded")
        generation = Generation(backend, request, self._ended)
        self._slot.generation = generation
        return generation

    def _ended(self, error: BaseException | None) -> None:
        slot = self._slot
        slot.generation = None
        slot.requests_served += 1
        if isinstance(error, WorkerDied):
            # The next request loads the model again; this worker is gone.
            slot.crashes += 1
            dead, slot.backend = slot.backend, None
            if dead is not None:
                self._pool._close_later(dead)
            log.warning("%s", error)
        self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        slot = self._slot
        now = time.monotonic()
        took = now - self._started
        slot.seconds_per_request = (
            took if not slot.seconds_per_request else 0.7 * slot.seconds_per_request + 0.3 * took
        )
        slot.last_used = now
        slot.lock.release()


class ModelPool:
    """The models a server offers, by the names clients use."""

    def __init__(
        self,
        named: Mapping[str, ResolvedModel],
        options_for: OptionsFor,
        open_backend: OpenBackend = open_model,
        find: FindModel | None = find_in_store,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keep_alive: float | None = 300.0,
    ) -> None:
        self.named = dict(named)
        self.queue_size = queue_size
        self.keep_alive = keep_alive
        self._options_for = options_for
        self._open = open_backend
        self._find = find
        self._aliases: dict[str, ResolvedModel] = {}
        for model in self.named.values():
            for alias in (model.display_name, model.manifest.name if model.manifest else None):
                if alias and alias not in self.named:
                    self._aliases.setdefault(alias, model)
        self._slots: dict[str, Slot] = {}
        self._closers: set[asyncio.Future[None]] = set()
        self.closing = False

    # -- finding a model and taking a turn --------------------------------------------------

    async def lookup(self, name: str) -> ResolvedModel:
        model = self.named.get(name) or self._aliases.get(name)
        if model is not None:
            return model
        if self._find is not None:
            try:
                return await asyncio.to_thread(self._find, name)
            except UnknownReferenceError:
                pass
        listed = ", ".join(self.named) or "the store's models"
        raise ModelNotFound(f"the model {name!r} does not exist here; served: {listed}")

    async def acquire(self, name: str) -> Lease:
        """Wait for `name`'s turn. QueueFull when its queue is full, ShuttingDown when stopping."""
        if self.closing:
            raise ShuttingDown("the server is shutting down")
        model = await self.lookup(name)
        slot = self._slots.get(str(model.path))
        if slot is None:
            slot = self._slots[str(model.path)] = Slot(model)
        if slot.lock.locked() and slot.waiting >= self.queue_size:
            retry = max(1, min(60, math.ceil(slot.seconds_per_request * (slot.waiting + 1))))
            raise QueueFull(
                f"{name} is busy and {slot.waiting} requests are waiting for it (the queue holds "
                f"{self.queue_size}); try again in {retry} s",
                retry,
            )
        slot.waiting += 1
        try:
            await slot.lock.acquire()
        finally:
            slot.waiting -= 1
        if self.closing:
            slot.lock.release()
            raise ShuttingDown("the server is shutting down")
        return Lease(self, slot)

    async def _load(self, slot: Slot) -> Backend:
        if slot.backend is not None:
            return slot.backend
        if slot.loading is None:
            # A task of its own: a request that goes away mid-load does not lose the worker.
            slot.loading = asyncio.ensure_future(self._open_into(slot))
        return await asyncio.shield(slot.loading)

    async def _open_into(self, slot: Slot) -> Backend:
        try:
            options = await asyncio.to_thread(self._options_for, slot.model)
            backend = await asyncio.to_thread(self._open, slot.model, options)
        finally:
            slot.loading = None
        if self.closing:
            await asyncio.to_thread(backend.close)
            raise ShuttingDown("the server is shutting down")
        slot.backend = backend
        slot.loads += 1
        slot.last_used = time.monotonic()
        return backend

    def _close_later(self, backend: Backend) -> None:
        closer = asyncio.ensure_future(asyncio.to_thread(backend.close))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    # -- keep-alive -------------------------------------------------------------------------

    async def unload_idle(self) -> list[str]:
        """Close the workers idle for longer than the keep-alive time; the names unloaded."""
        if self.keep_alive is None:
            return []
        unloaded = []
        for slot in list(self._slots.values()):
            idle = time.monotonic() - slot.last_used
            if slot.backend is None or slot.lock.locked() or slot.waiting or idle < self.keep_alive:
                continue
            async with slot.lock:  # a request arriving now waits for the close, then loads afresh
                backend, slot.backend = slot.backend, None
                if backend is not None:
                    await asyncio.to_thread(backend.close)
                    unloaded.append(slot.model.display_name)
        return unloaded

    async def keep_alive_loop(self) -> None:
        """Unload idle models until cancelled."""
        if self.keep_alive is None:
            return
        interval = min(1.0, max(self.keep_alive / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            for name in await self.unload_idle():
                log.info("unloaded %s after %s s idle", name, f"{self.keep_alive:g}")

    # -- stopping ---------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Take no new work and cancel every answer in progress (each stream then ends cleanly)."""
        self.closing = True
        for slot in self._slots.values():
            if slot.generation is not None:
                slot.generation.cancel()

    async def close(self) -> None:
        """Stop every worker (after their answers have ended, or SHUTDOWN_GRACE_S)."""
        self.begin_shutdown()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for slot in self._slots.values():
            generation, loading = slot.generation, slot.loading
            if generation is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(generation.done.wait(), max(0.1, deadline - time.monotonic()))
            if loading is not None:
                with contextlib.suppress(Exception):
                    await loading
        backends = [slot.backend for slot in self._slots.values() if slot.backend is not None]
        for slot in self._slots.values():
            slot.backend = None
        await asyncio.gather(*(asyncio.to_thread(b.close) for b in backends), *self._closers)

    # -- what the status route shows --------------------------------------------------------

    async def listing(self) -> list[tuple[str, dict[str, Any]]]:
        """The models GET /v1/models shows: those named, or the whole store when none was."""
        if not self.named:
            return await asyncio.to_thread(store_listing)
        return [
            (name, {"kind": model.kind.value, "quant": model.quant, "loaded": self.is_loaded(model)})
            for name, model in self.named.items()
        ]

    def is_loaded(self, model: ResolvedModel) -> bool:
        slot = self._slots.get(str(model.path))
        return slot is not None and slot.backend is not None

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        models = []
        for slot in self._slots.values():
            backend = slot.backend
            idle = None if slot.lock.locked() else round(now - slot.last_used, 3)
            unload_in = None
            if backend is not None and idle is not None and self.keep_alive is not None:
                unload_in = round(max(0.0, self.keep_alive - idle), 3)
            models.append(
                {
                    "model": slot.model.display_name,
                    "names": [n for n, m in self.named.items() if m.path == slot.model.path],
                    "kind": slot.model.kind.value,
                    "quant": slot.model.quant,
                    "loaded": backend is not None,
                    "pid": backend.facts.pid if backend is not None else None,
                    "memory_bytes": backend.rss_bytes() if backend is not None else 0,
                    "n_ctx": backend.facts.n_ctx if backend is not None else None,
                    "busy": slot.generation is not None,
                    "queued": slot.waiting,
                    "idle_seconds": idle,
                    "unload_in_seconds": unload_in,
                    "requests_served": slot.requests_served,
                    "loads": slot.loads,
                    "crashes": slot.crashes,
                }
            )
        return {"keep_alive_seconds": self.keep_alive, "queue_size": self.queue_size, "models": models}
