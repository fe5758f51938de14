"""Helpers for the server's tests: a pool of fake models, a real server on loopback in a thread, and
reading server-sent events."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from starlette.applications import Starlette

from ondevice.kinds import Kind
from ondevice.refs import ResolvedModel
from ondevice.runtime.engine import Backend
from ondevice.runtime.protocol import LoadOptions
from ondevice.server.pool import ModelPool
from ondevice.server.serving import serving_in_thread


def fake_model(name: str, kind: Kind = Kind.INSTRUCT) -> ResolvedModel:
    """A ResolvedModel for a model that is never loaded for real (its backend is a fake)."""
    summary: Any = SimpleNamespace(file_type_name="Q4_0", file_size=1000, metadata={})
    return ResolvedModel(name, name, Path(f"/nonexistent/{name}.gguf"), kind, "test", summary)


def fake_pool(
    backends: dict[str, Callable[[], Backend]],
    options_for: Callable[[ResolvedModel], LoadOptions] | None = None,
    **kwargs: Any,
) -> ModelPool:
    """A pool whose models (by name; "base" in a name makes it a base model) open as the fakes given."""
    named = {name: fake_model(name, Kind.BASE if "base" in name else Kind.INSTRUCT) for name in backends}
    return ModelPool(
        named,
        options_for=options_for or (lambda model: LoadOptions()),
        open_backend=lambda model, options: backends[model.ref](),
        find=None,
        **kwargs,
    )


def serving(app: Starlette, pool: ModelPool) -> contextlib.AbstractContextManager[str]:
    """The app served by uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL and stops
    the server (and every worker) on the way out."""
    return serving_in_thread(app, pool)


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any] | str]:
    """The data of each server-sent event: a dict, or "[DONE]"."""
    for line in lines:
        if not line.startswith("data: "):
            assert line == "", f"unexpected line in the stream: {line!r}"
            continue
        data = line.removeprefix("data: ")
        yield data if data == "[DONE]" else json.loads(data)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
