"""The routes: OpenAI's /v1/models, /v1/chat/completions and /v1/completions, and /ondevice/status.

A thin layer: a body is read (size-limited), checked (requests.py), given a turn at its model
(pool.py), phrased as `ondevice chat` and `ondevice run` phrase it (runtime.engine), and its events
sent back as one JSON object or as server-sent events (responses.py, sse.py).

How a request reaches a model:
- /v1/chat/completions: the model's chat template when it has one; a model without one gets a plain
  User:/Assistant: transcript that ends where the reply begins (as in `ondevice chat`).
- /v1/completions: the prompt as raw text, to either kind (as `ondevice run` gives a base model).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import OndeviceError, PromptError, WorkerDied, WorkerError
from ..kinds import Kind
from ..planning.preflight import InsufficientMemoryError
from ..runtime.engine import chat_turn, single_turn
from ..runtime.protocol import Finished, TokenEvent
from . import sse
from .api_errors import ApiError, ErrorType, error_body
from .pool import Generation, ModelNotFound, ModelPool, QueueFull, ShuttingDown
from .requests import ChatRequest, CompletionRequest, chat_request, completion_request, parse_json, too_large
from .responses import Reply

log = logging.getLogger("ondevice.server")

MAX_BODY_BYTES = 8 << 20  # a prompt bigger than this cannot fit any context we load


def api_error(exc: BaseException, param: str | None = None) -> ApiError:
    """What a failure looks like to the client: status, type and code."""
    if isinstance(exc, ApiError):
        return exc
    message = str(exc)
    if isinstance(exc, ModelNotFound):
        return ApiError(404, message, ErrorType.NOT_FOUND, "model", "model_not_found")
    if isinstance(exc, QueueFull):
        headers = {"Retry-After": str(exc.retry_after)}
        return ApiError(429, message, ErrorType.RATE_LIMIT, None, "queue_full", headers)
    if isinstance(exc, ShuttingDown):
        return ApiError(503, message, ErrorType.SERVER, None, "shutting_down")
    if isinstance(exc, PromptError):
        code = "context_length_exceeded" if "context" in message else "invalid_prompt"
        return ApiError(400, message, ErrorType.INVALID_REQUEST, param, code)
    if isinstance(exc, InsufficientMemoryError):
        return ApiError(503, message, ErrorType.SERVER, "model", "insufficient_memory")
    if isinstance(exc, WorkerDied):
        return ApiError(500, message, ErrorType.SERVER, None, "worker_died")
    if isinstance(exc, WorkerError):
        return ApiError(500, message, ErrorType.SERVER, None, "worker_error")
    if isinstance(exc, OndeviceError):
        return ApiError(500, message, ErrorType.SERVER, "model", "model_error")
    log.error("internal error", exc_info=exc)
    return ApiError(
        500, f"internal error: {type(exc).__name__}: {exc}", ErrorType.SERVER, None, "internal_error"
    )


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), error.status, headers=error.headers)


class BearerAuth:
    """Every route asks for `Authorization: Bearer KEY` when the server has a key."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
                message = (
                    "missing API key: send 'Authorization: Bearer KEY'"
                    if not token
                    else "the API key is not the one this server was started with"
                )
                error = ApiError(401, message, ErrorType.AUTHENTICATION, None, "invalid_api_key")
                response = JSONResponse(error.body(), 401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Routes:
    def __init__(self, pool: ModelPool, max_body_bytes: int) -> None:
        self.pool = pool
        self.max_body_bytes = max_body_bytes
        self.started = time.time()

    async def _body(self, request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            chunks.append(chunk)
        return parse_json(b"".join(chunks))

    async def models(self, request: Request) -> Response:
        listing = await self.pool.listing()
        data = [self._model_object(name, about) for name, about in listing]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        name = request.path_params["name"]
        for listed, about in await self.pool.listing():
            if listed == name:
                return JSONResponse(self._model_object(listed, about))
        model = await self._lookup(name)
        return JSONResponse(self._model_object(name, {"kind": model.kind.value, "quant": model.quant}))

    def _model_object(self, name: str, about: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": int(self.started),
            "owned_by": "ondevice",
            "ondevice": about,
        }

    async def _lookup(self, name: str) -> Any:
        try:
            return await self.pool.lookup(name)
        except ModelNotFound as exc:
            raise api_error(exc) from None

    async def status(self, request: Request) -> Response:
        return JSONResponse(self.pool.status())  # on the loop: the slots change there

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, chat_request(await self._body(request)))

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, completion_request(await self._body(request)))

    async def _generate(self, request: Request, parsed: ChatRequest | CompletionRequest) -> Response:
        chat = isinstance(parsed, ChatRequest)
        try:
            lease = await self.pool.acquire(parsed.model)
        except OndeviceError as exc:
            raise api_error(exc) from None
        try:
            backend = await lease.backend()
            if isinstance(parsed, ChatRequest):
                has_template = bool(backend.facts.chat_template)
                phrased = chat_turn(has_template, list(parsed.messages), parsed.params)
            else:
                phrased = single_turn(Kind.BASE, False, parsed.prompt, parsed.params)
            generation = lease.generate(phrased)
        except BaseException as exc:
            lease.release()
            if isinstance(exc, Exception):
                raise api_error(exc) from None
            raise
        reply = Reply(parsed.model, chat)
        try:
            await generation.prompt_ready()
        except Exception as exc:
            raise api_error(exc, "messages" if chat else "prompt") from None
        except BaseException:
            generation.cancel()
            raise
        if parsed.stream:
            return StreamingResponse(
                _stream(generation, reply, parsed.include_usage),
                media_type=sse.MEDIA_TYPE,
                headers=sse.HEADERS,
            )
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, generation))
        try:
            finished = await generation.finished()
        except Exception as exc:
            raise api_error(exc) from None
        finally:
            generation.cancel()  # nothing once it has ended; stops it if this handler is cancelled
            watcher.cancel()
        return JSONResponse(reply.complete(finished))


async def _cancel_on_disconnect(request: Request, generation: Generation) -> None:
    """A client that goes away while its (non-streamed) answer is made stops it."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            generation.cancel()
            return


async def _stream(generation: Generation, reply: Reply, include_usage: bool) -> AsyncIterator[bytes]:
    """The answer as server-sent events. When the client goes away, Starlette cancels this generator
    at its next await, and `finally` stops the generation at once."""
    try:
        if reply.chat:
            yield sse.event(reply.chunk("", role=True))
        finished: Finished | None = None
        async for batch in generation.batches():
            text = "".join(e.text for e in batch if isinstance(e, TokenEvent))
            if text:
                yield sse.event(reply.chunk(text))
            finished = next((e for e in batch if isinstance(e, Finished)), finished)
        if finished is None:
            raise WorkerError("the answer ended without a result")
        for chunk in reply.last_chunk(finished, include_usage):
            yield sse.event(chunk)
        yield sse.DONE
    except Exception as exc:  # a worker that died mid-answer: an error event ends the stream
        yield sse.event(api_error(exc).body())
    finally:
        generation.cancel()


async def _api_error_handler(request: Request, exc: Exception) -> Response:
    return _error_response(api_error(exc))


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = ErrorType.NOT_FOUND if exc.status_code == 404 else ErrorType.INVALID_REQUEST
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse(error_body(message, kind), exc.status_code, headers=exc.headers)


async def _internal_error_handler(request: Request, exc: Exception) -> Response:
    return _error_response(api_error(exc))


def create_app(
    pool: ModelPool, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> Starlette:
    """The ASGI application over `pool`; with `api_key`, every route asks for it."""
    routes = Routes(pool, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        reaper = asyncio.ensure_future(pool.keep_alive_loop())
        try:
            yield
        finally:
            reaper.cancel()
            await pool.close()

    app = Starlette(
        routes=[
            Route("/v1/models", routes.models, methods=["GET"]),
            Route("/v1/models/{name:path}", routes.model, methods=["GET"]),
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/completions", routes.completions, methods=["POST"]),
            Route("/ondevice/status", routes.status, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
        ],
        exception_handlers={
            ApiError: _api_error_handler,
            HTTPException: _http_error_handler,
            Exception: _internal_error_handler,
        },
        lifespan=lifespan,
    )
    if api_key:
        app.add_middleware(BearerAuth, api_key=api_key)
    return app
