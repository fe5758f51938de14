"""The routes without a socket (Starlette's TestClient, httpx's ASGI transport), over fake models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from ondevice.errors import PromptError, WorkerDied
from ondevice.planning.preflight import InsufficientMemoryError
from ondevice.prompting import PromptMode
from ondevice.runtime.engine import Event
from ondevice.runtime.protocol import GenerateRequest, LoadOptions
from ondevice.server.app import create_app
from ondevice.server.pool import ModelPool
from tests.support.fake_backend import FakeBackend
from tests.support.serving import fake_pool, sse_events, wait_until

CHAT = {"model": "chatty", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


class TooLong(FakeBackend):
    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        raise PromptError("the prompt is 5000 tokens but the context holds 2048; shorten it")
        yield  # pragma: no cover


class DiesMidAnswer(FakeBackend):
    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        for i, event in enumerate(super().stream(request)):
            if i == 3:
                raise WorkerDied("the model worker for chatty was killed by SIGKILL while generating", -9)
            yield event


@pytest.fixture
def opened() -> list[FakeBackend]:
    return []


def opener(opened: list[FakeBackend], cls: type[FakeBackend] = FakeBackend, **kwargs):
    def open_backend() -> FakeBackend:
        backend = cls(**kwargs)
        opened.append(backend)
        return backend

    return open_backend


@pytest.fixture
def client(opened) -> Iterator[TestClient]:
    pool = fake_pool(
        {
            "chatty": opener(opened),
            "base-model": opener(opened, chat_template=None),
            "too-long": opener(opened, TooLong),
        }
    )
    with TestClient(create_app(pool, max_body_bytes=4096)) as test_client:
        yield test_client


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def test_models_lists_those_named(client):
    body = client.get("/v1/models").json()
    assert [m["id"] for m in body["data"]] == ["chatty", "base-model", "too-long"]
    assert body["data"][1]["ondevice"] == {"kind": "base", "quant": "Q4_0", "loaded": False}
    assert client.get("/v1/models/chatty").json()["id"] == "chatty"
    error_of(client.get("/v1/models/nope"), 404, "model_not_found")


def test_chat_answers_with_usage_and_timings(client, opened):
    body = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3}).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "The sky is "}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3 and body["timings"]["time_to_first_token_ms"] == 100.0
    (request,) = opened[0].requests
    assert request.mode is PromptMode.CHAT_TEMPLATE and request.params.max_tokens == 3


def test_base_model_chats_in_a_transcript_and_completes_raw_text(client, opened):
    client.post("/v1/chat/completions", json={**CHAT, "model": "base-model"})
    client.post("/v1/completions", json={"model": "base-model", "prompt": "Once upon"})
    client.post("/v1/completions", json={"model": "chatty", "prompt": "Once upon"})
    chat, raw = opened[0].requests
    assert chat.mode is PromptMode.TRANSCRIPT and "\nUser:" in chat.params.stop
    assert raw.mode is PromptMode.COMPLETION and raw.messages[0].content == "Once upon"
    assert opened[1].requests[0].mode is PromptMode.COMPLETION  # an instruct model gets raw text too


def test_stream_sends_chunks_then_done(client):
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == FakeBackend().answer + " "
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and "timings" in chunks[-2]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 13
    assert len({c["id"] for c in chunks}) == 1


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'"a string"', 400, "invalid_json"),
        (
            b'{"model": "chatty", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            400,
            None,
        ),
        (
            b'{"model": "chatty", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5}',
            400,
            "out_of_range",
        ),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
        (
            b'{"model": "too-long", "messages": [{"role": "user", "content": "x"}]}',
            400,
            "context_length_exceeded",
        ),
        (
            b'{"model": "chatty", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}',
            413,
            "request_too_large",
        ),
    ],
)
def test_bad_requests_get_openai_error_bodies(client, raw, status, code):
    error_of(client.post("/v1/chat/completions", content=raw), status, code)


def test_a_streamed_request_for_a_too_long_prompt_is_an_error_status(client):
    error_of(
        client.post("/v1/chat/completions", json={**CHAT, "model": "too-long", "stream": True}),
        400,
        "context_length_exceeded",
    )


def test_unknown_routes_and_methods_get_error_bodies(client):
    assert error_of(client.get("/v2/nothing"), 404)["type"] == "not_found_error"
    error_of(client.get("/v1/chat/completions"), 405)


def test_api_key_guards_every_route(opened):
    pool = fake_pool({"chatty": opener(opened)})
    with TestClient(create_app(pool, api_key="sesame")) as client:
        for path in ("/v1/models", "/ondevice/status", "/health"):
            error_of(client.get(path), 401, "invalid_api_key")
            error_of(client.get(path, headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key")
            assert client.get(path, headers={"Authorization": "Bearer sesame"}).status_code == 200
        error_of(client.post("/v1/chat/completions", json=CHAT), 401)
        ok = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sesame"})
        assert ok.status_code == 200
    with TestClient(create_app(fake_pool({"chatty": opener(opened)}))) as open_client:
        assert open_client.get("/v1/models").status_code == 200


def test_a_model_that_does_not_fit_is_refused_with_the_numbers(opened):
    def too_big(model):
        raise InsufficientMemoryError("chatty needs 9.0 GB, 1.2 GB free")

    with TestClient(create_app(fake_pool({"chatty": opener(opened)}, options_for=too_big))) as client:
        error = error_of(client.post("/v1/chat/completions", json=CHAT), 503, "insufficient_memory")
    assert "9.0 GB" in error["message"] and opened == []


def test_a_worker_crash_ends_its_stream_with_an_error_and_the_next_request_reloads(opened):
    backends = iter([DiesMidAnswer(), FakeBackend()])
    pool = fake_pool({"chatty": lambda: opened.append(next(backends)) or opened[-1]})
    with TestClient(create_app(pool)) as client:
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            events = list(sse_events(r.iter_lines()))
        assert "[DONE]" not in events and events[-1]["error"]["code"] == "worker_died"
        wait_until(lambda: client.get("/ondevice/status").json()["models"][0]["busy"] is False)
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        (status,) = client.get("/ondevice/status").json()["models"]
        assert opened[0].closed and not opened[1].closed
    assert (status["loads"], status["crashes"], status["requests_served"]) == (2, 1, 2)
    assert opened[1].closed  # the server's end stops every worker


async def test_a_full_queue_answers_429_with_retry_after_and_loses_nothing(opened):
    gate = threading.Event()
    pool = fake_pool({"chatty": opener(opened, gate=gate)}, queue_size=1)
    app = create_app(pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        body = {**CHAT, "max_tokens": 2}
        first = asyncio.ensure_future(client.post("/v1/chat/completions", json=body))
        await _until(lambda: bool(pool.status()["models"]) and pool.status()["models"][0]["busy"])
        second = asyncio.ensure_future(client.post("/v1/chat/completions", json=body))
        await _until(lambda: pool.status()["models"][0]["queued"] == 1)
        refused = await client.post("/v1/chat/completions", json=body)
        error_of(refused, 429, "queue_full")
        assert int(refused.headers["Retry-After"]) >= 1
        gate.set()
        answers = await asyncio.gather(first, second)
    assert [a.status_code for a in answers] == [200, 200]
    assert pool.status()["models"][0]["requests_served"] == 2
    await pool.close()
    assert opened[0].closed


async def test_keep_alive_unloads_idle_models_and_status_shows_them(opened):
    pool = fake_pool({"chatty": opener(opened)}, keep_alive=0.0)
    app = create_app(pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        (model,) = (await client.get("/ondevice/status")).json()["models"]
        assert model["loaded"] and model["requests_served"] == 1 and model["memory_bytes"] == 123_000_000
        assert model["idle_seconds"] >= 0 and model["names"] == ["chatty"]
        assert await pool.unload_idle() == ["chatty"]
        (model,) = (await client.get("/ondevice/status")).json()["models"]
        assert not model["loaded"] and model["memory_bytes"] == 0 and opened[0].closed
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert len(opened) == 2
    await pool.close()


async def _until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_without_named_models_the_store_is_served_by_name_and_paths_are_refused(models_home, opened):
    pool = ModelPool({}, options_for=lambda model: LoadOptions(), open_backend=lambda m, o: opener(opened)())
    with TestClient(create_app(pool)) as client:
        listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert sorted(listed) == ["gemma-3-270m:Q4_K_M", "smollm2-135m-instruct:Q4_1"]
        for name in ("smollm2-135m-instruct", "smollm2-135m-instruct:Q4_1"):
            assert client.post("/v1/chat/completions", json={**CHAT, "model": name}).status_code == 200
        gguf = str(next(models_home.rglob("*.gguf")))
        for name in (gguf, "bundled:smollm2-135m-instruct", "hf:org/repo", "../x.gguf", "nothing-here"):
            error_of(
                client.post("/v1/chat/completions", json={**CHAT, "model": name}), 404, "model_not_found"
            )
    assert len(opened) == 1  # both names are the same model: one worker
