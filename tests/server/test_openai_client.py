"""The official `openai` client against a real server on loopback, with both bundled models: the texts
match `ondevice run`'s at temperature 0 with the same seed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from ondevice.generate import run_prompt
from ondevice.refs import ResolvedModel
from ondevice.runtime.protocol import ExtraBufts, GenerationParams, LoadOptions
from ondevice.server.app import create_app
from ondevice.server.pool import ModelPool
from tests.support.models import GEMMA, SMOL
from tests.support.serving import serving

pytestmark = pytest.mark.models

# Extra buffer types off: every test gets a fresh $ONDEVICE_HOME, where `auto` would learn again on an
# AMX CPU that they crash (a crash and a reload per load); the comparison with `run` loads the same way.
OPTIONS = LoadOptions(n_ctx=512, n_threads=2, extra_bufts=ExtraBufts.OFF)
QUESTION = "Explain in one sentence why the sky is blue."
OPENING = "The sky is blue because"
PARAMS = GenerationParams(max_tokens=16, temperature=0.0, seed=11)


@pytest.fixture(scope="module")
def expected(smol: ResolvedModel, gemma: ResolvedModel) -> dict[str, str]:
    """What `ondevice run` answers (its library call), before the server starts."""
    return {
        SMOL: run_prompt(smol, QUESTION, PARAMS, OPTIONS).finished.text,
        GEMMA: run_prompt(gemma, OPENING, PARAMS, OPTIONS).finished.text,
    }


@pytest.fixture(scope="module")
def url(smol: ResolvedModel, gemma: ResolvedModel, expected) -> Iterator[str]:
    pool = ModelPool({SMOL: smol, GEMMA: gemma}, options_for=lambda model: OPTIONS, find=None)
    with serving(create_app(pool), pool) as base:
        yield base


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_lists_both_models(client):
    assert [m.id for m in client.models.list()] == [SMOL, GEMMA]


def test_chat_from_the_instruct_model_matches_run(client, expected):
    reply = client.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": QUESTION}], max_tokens=16, temperature=0, seed=11
    )
    assert reply.choices[0].message.content == expected[SMOL] and expected[SMOL].strip()
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 16 and reply.usage.prompt_tokens > 10
    timings = reply.model_extra["timings"]
    assert timings["predicted_n"] == 16 and timings["predicted_per_second"] > 0
    assert timings["time_to_first_token_ms"] > 0


def test_streamed_chat_matches_run(client, expected):
    stream = client.chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=16,
        temperature=0,
        seed=11,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected[SMOL]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 16
    assert len({c.id for c in chunks}) == 1


def test_completion_from_the_base_model_matches_run(client, expected):
    reply = client.completions.create(model=GEMMA, prompt=OPENING, max_tokens=16, temperature=0, seed=11)
    assert reply.choices[0].text == expected[GEMMA] and expected[GEMMA].strip()
    assert reply.usage.completion_tokens == 16


def test_unknown_model_is_404_never_another_model(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"


def test_prompt_longer_than_the_context_is_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=GEMMA, prompt="blue sky " * 600, max_tokens=4)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert "context holds 512" in caught.value.body["message"]


def test_status_lists_the_loaded_models(url):
    status = httpx.get(f"{url}/ondevice/status").json()
    loaded = {m["names"][0]: m for m in status["models"]}
    assert set(loaded) == {SMOL, GEMMA}
    for model in loaded.values():
        assert model["loaded"] and model["memory_bytes"] > 50_000_000 and model["pid"] > 0
        assert model["requests_served"] >= 1 and model["idle_seconds"] >= 0 and model["crashes"] == 0
    assert status["keep_alive_seconds"] == 300.0
