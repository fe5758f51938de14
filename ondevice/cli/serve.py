"""ondevice serve [REF...]"""

from __future__ import annotations

from typing import Any

import click

from ..hosts import is_loopback
from ..refs import ResolvedModel
from ..server.app import create_app
from ..server.pool import DEFAULT_KEEP_ALIVE, DEFAULT_QUEUE_SIZE, ModelPool, parse_keep_alive
from ..server.serving import listen, url_of
from ..server.serving import serve as serve_app
from .common import describe_model, note
from .options import LoadFlags, load_options
from .progress import resolve_with_progress

API_KEY_ENV = "ONDEVICE_API_KEY"


class KeepAlive(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if value is None or isinstance(value, float):
            return value
        try:
            return parse_keep_alive(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (llama-server's default; 0 picks a free one).",
)
@click.option(
    "--api-key",
    envvar=API_KEY_ENV,
    default=None,
    help=f"Ask every request for 'Authorization: Bearer KEY' [default: ${API_KEY_ENV}, else none].",
)
@click.option(
    "--keep-alive",
    type=KeepAlive(),
    default=DEFAULT_KEEP_ALIVE,
    show_default=True,
    help="Unload a model after this long unused (Ollama's convention: 30s, 5m, 1h; 0 right after each "
    "request; -1 never).",
)
@click.option(
    "--queue",
    "queue_size",
    type=click.IntRange(0, 10_000),
    default=DEFAULT_QUEUE_SIZE,
    show_default=True,
    help="Requests that may wait for a busy model; more get HTTP 429 with Retry-After.",
)
@click.option(
    "--log-level",
    type=click.Choice(["warning", "info", "debug"]),
    default="warning",
    show_default=True,
    help="uvicorn's logging; info logs each request.",
)
@load_options()
def serve(
    refs: tuple[str, ...],
    host: str,
    port: int,
    api_key: str | None,
    keep_alive: float | None,
    queue_size: int,
    log_level: str,
    load: LoadFlags,
) -> None:
    """Serve models over a local OpenAI-compatible API (/v1/chat/completions, /v1/completions,
    /v1/models; /ondevice/status shows the loaded models).

    The models named (REF: a store name, bundled:NAME, a .gguf path) are listed; any other model in the
    store can be asked for by its name. Each loads in its own worker on first use, after the memory
    pre-flight, answers one request at a time, and unloads after --keep-alive unused.

    On /v1/chat/completions a model with a chat template gets it; one without gets a User:/Assistant:
    transcript, as in `ondevice chat`. /v1/completions gives the prompt as raw text to either kind.
    """
    load.plan()  # a bad --profile or flag fails now, not at the first request
    named: dict[str, ResolvedModel] = {}
    for ref in refs:
        model = resolve_with_progress(ref)
        named.setdefault(ref.strip(), model)
    pool = ModelPool(
        named,
        options_for=lambda model: load.plan().options_for(model),  # memory as it is at load time
        queue_size=queue_size,
        keep_alive=keep_alive,
    )
    app = create_app(pool, api_key=api_key or None)
    sock = listen(host, port)
    url = url_of(sock)
    if not api_key and not is_loopback(host):
        note(f"warning: listening on {host} without an API key: anyone who can reach it can use it")

    def started() -> None:
        for name, model in named.items():
            note(f"{name}: {describe_model(model)} (loads on first use)")
        if not named:
            note("no model named: every model in the store can be asked for by name")
        note(f"serving on {url}/v1 (OpenAI API); status at {url}/ondevice/status; Ctrl-C stops")

    serve_app(app, pool, sock, started, log_level)
    note("stopped")
