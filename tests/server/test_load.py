"""Load on a real server on loopback: many clients at once, clients that go away, a worker killed
mid-answer."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ondevice.refs import ResolvedModel
from ondevice.runtime.protocol import ExtraBufts, LoadOptions
from ondevice.server.app import create_app
from ondevice.server.pool import ModelPool
from tests.support.models import GEMMA, SMOL
from tests.support.serving import serving, sse_events, wait_until

pytestmark = pytest.mark.models

OPTIONS = LoadOptions(n_ctx=512, n_threads=2, extra_bufts=ExtraBufts.OFF)
QUEUE = 2


@pytest.fixture(scope="module")
def url(smol: ResolvedModel, gemma: ResolvedModel) -> Iterator[str]:
    pool = ModelPool({SMOL: smol, GEMMA: gemma}, options_for=lambda m: OPTIONS, find=None, queue_size=QUEUE)
    with serving(create_app(pool), pool) as base:
        yield base


def status_of(url: str, name: str) -> dict[str, Any]:
    return next(m for m in httpx.get(f"{url}/ondevice/status").json()["models"] if name in m["names"])


def chat_body(model: str, content: str, max_tokens: int, stream: bool = True) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}]
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


def streamed(url: str, body: dict[str, Any]) -> tuple[int, str, set[str], str | None]:
    """(status, text, the chunk ids, Retry-After) of one streamed request."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, "", set(), response.headers.get("retry-after")
        events = list(sse_events(response.iter_lines()))
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    return 200, text, {c["id"] for c in chunks}, None


def test_eight_clients_over_two_models_are_answered_or_told_429(url):
    # Two prompts per model, each asked twice: answers to the same prompt must be the same text
    # (greedy), answers to different prompts different, whichever order they were served in.
    prompts = ["Name a colour.", "Name a fruit."]
    bodies = [chat_body(model, prompts[i % 2], 8) for model in (SMOL, GEMMA) for i in range(4)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda b: streamed(url, b), bodies))
    assert len(outcomes) == 8
    for status, _, ids, retry_after in outcomes:
        assert status in (200, 429)
        if status == 200:
            assert len(ids) == 1  # every chunk of a stream is of that one answer
        else:
            assert retry_after is not None and int(retry_after) >= 1
    answered = [
        (b["model"], b["messages"][0]["content"], o[1])
        for b, o in zip(bodies, outcomes, strict=True)
        if o[0] == 200
    ]
    assert len(answered) >= 2 * (1 + QUEUE)  # per model: one running, QUEUE waiting, all served
    texts: dict[tuple[str, str], set[str]] = {}
    for model, prompt, text in answered:
        texts.setdefault((model, prompt), set()).add(text)
    assert all(len(t) == 1 for t in texts.values()), texts
    assert len({next(iter(t)) for t in texts.values()}) == len(texts)
    for name in (SMOL, GEMMA):
        model = status_of(url, name)
        assert model["busy"] is False and model["queued"] == 0


def test_a_client_that_goes_away_mid_stream_frees_the_model(url):
    body = {"model": GEMMA, "prompt": "Once upon a time", "max_tokens": 400, "stream": True, "temperature": 0}
    served_before = status_of(url, GEMMA)["requests_served"]
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as response:
        lines = response.iter_lines()
        first = next(e for e in sse_events(lines) if isinstance(e, dict) and e["choices"][0]["text"])
        assert first["choices"][0]["text"]
        left = time.monotonic()
    # Closed after one chunk of 400: the generation is cancelled at once, not run to its end.
    wait_until(lambda: status_of(url, GEMMA)["requests_served"] == served_before + 1, 10, "the cancel")
    assert time.monotonic() - left < 8  # 400 tokens take far longer
    status, text, _, _ = streamed(url, chat_body(GEMMA, "Hello", 4))
    assert status == 200 and text


def test_a_worker_killed_mid_stream_ends_that_stream_with_an_error_and_the_server_carries_on(url):
    streamed(url, chat_body(SMOL, "Hi", 2))  # loaded
    before = status_of(url, SMOL)
    body = chat_body(SMOL, "Write a long story about a lighthouse.", 400)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        events = sse_events(response.iter_lines())
        next(e for e in events if isinstance(e, dict) and e["choices"][0]["delta"].get("content"))
        os.kill(before["pid"], signal.SIGKILL)
        rest = list(events)
    assert "[DONE]" not in rest
    error = rest[-1]["error"]
    assert error["code"] == "worker_died" and "SIGKILL" in error["message"]
    status, text, _, _ = streamed(url, chat_body(SMOL, "Hi", 4))
    assert status == 200 and text
    after = status_of(url, SMOL)
    assert after["crashes"] == before["crashes"] + 1 and after["loads"] == before["loads"] + 1
    assert after["pid"] != before["pid"]
