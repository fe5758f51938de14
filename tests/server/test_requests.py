"""Reading requests and writing responses, without a server."""

from __future__ import annotations

import pytest

from ondevice.prompting import Message
from ondevice.runtime.protocol import Finished, GenerationStats, PromptReady, StopReason
from ondevice.server.api_errors import ApiError
from ondevice.server.pool import parse_keep_alive
from ondevice.server.requests import INT32_MAX, chat_request, completion_request, parse_json
from ondevice.server.responses import Reply


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("300", 300.0),
        ("0", 0.0),
        ("250ms", 0.25),
        ("-1", None),
        ("-5m", None),
        ("1.5m", 90.0),
    ],
)
def test_keep_alive_follows_ollama(text, seconds):
    assert parse_keep_alive(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m", "5x", "inf", "nan", "5m3"])
def test_keep_alive_refuses_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_keep_alive(text)


def test_chat_request_reads_the_fields_and_defaults():
    request = chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
                },
            ],
            "max_completion_tokens": 7,
            "temperature": 0,
            "seed": 3,
            "stop": "\n",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "ignored",
        }
    )
    assert request.messages == (Message("system", "Be brief."), Message("user", "Hi there"))
    assert (request.params.max_tokens, request.params.temperature, request.params.seed) == (7, 0.0, 3)
    assert request.params.stop == ("\n",) and request.stream and request.include_usage
    plain = completion_request({"model": "m", "prompt": ["Once"]})
    assert plain.prompt == "Once" and plain.params.max_tokens == INT32_MAX and not plain.stream
    assert (plain.params.temperature, plain.params.top_p, plain.params.top_k) == (0.8, 0.95, 40)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "'model'"),
        ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model", "'model'"),
        ({"model": "m", "messages": []}, "messages", "non-empty"),
        ({"model": "m", "messages": "hi"}, "messages", "non-empty"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "robot"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a number"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
            "text parts",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
            "between",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"},
            "max_tokens",
            "integer",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": True},
            "max_tokens",
            "integer",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
            "between",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": -0.1}, "top_p", "between"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": "a"}, "top_p", "number"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1.5}, "seed", "integer"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop", "strings"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 17},
            "stop",
            "at most",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
            "true or false",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n", "one choice"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
            "tools",
            "not supported",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True},
            "logprobs",
            "not supported",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"},
            },
            "response_format",
            "text",
        ),
    ],
)
def test_chat_request_refuses_bad_fields_with_the_field_named(body, param, fragment):
    with pytest.raises(ApiError) as caught:
        chat_request(body)
    assert caught.value.status == 400 and caught.value.param == param
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "m"}, "'prompt' must be a string"),
        ({"model": "m", "prompt": ["a", "b"]}, "one prompt"),
        ({"model": "m", "prompt": [1, 2]}, "must be a string"),
    ],
)
def test_completion_request_wants_one_text_prompt(body, fragment):
    with pytest.raises(ApiError, match=fragment):
        completion_request(body)


@pytest.mark.parametrize(
    ("raw", "fragment"), [(b"{", "not valid JSON"), (b"[1]", "an array"), (b"\xff", "JSON")]
)
def test_a_body_must_be_a_json_object(raw, fragment):
    with pytest.raises(ApiError, match=fragment) as caught:
        parse_json(raw)
    assert caught.value.body()["error"]["code"] == "invalid_json"


def test_responses_carry_usage_and_timings():
    stats = GenerationStats(10, 8, 5, 0.2, 0.1, 0.25, 1, StopReason.LENGTH)
    finished = Finished("Hello", (1, 2, 3, 4, 5), PromptReady("p", 10, 2), stats)
    reply = Reply("m", chat=True)
    body = reply.complete(finished)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "Hello"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    timings = body["timings"]
    assert timings["prompt_n"] == 8 and timings["cache_n"] == 2 and timings["time_to_first_token_ms"] == 250.0
    assert timings["predicted_per_second"] == 40.0 and timings["prompt_per_second"] == 40.0
    last, usage_chunk = reply.last_chunk(finished, include_usage=True)
    assert last["choices"][0]["finish_reason"] == "length" and usage_chunk["choices"] == []
    assert {c["id"] for c in (last, usage_chunk, reply.chunk("x"))} == {body["id"]}
    text = Reply("m", chat=False).complete(finished)
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "Hello"
