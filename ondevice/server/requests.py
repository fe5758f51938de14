"""The two generation requests, read from their JSON bodies and checked field by field.

Fields OpenAI defines and we honour: model, messages / prompt, max_tokens (max_completion_tokens),
temperature, top_p, seed, stop, stream, stream_options.include_usage, n (1 only); plus llama-server's
top_k and ignore_eos (for measuring). Fields that would change the answer's meaning and that we cannot
honour (tools, n > 1, logprobs, a JSON response format, ...) are refused rather than ignored; the rest
(user, metadata, penalties we do not implement ...) are ignored, as llama-server does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..prompting import Message
from ..runtime.protocol import GenerationParams
from .api_errors import ApiError, ErrorType, invalid

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STOPS = 16
# Defaults as `ondevice run` has them; max_tokens left out means "until the model ends or the context
# is full" (OpenAI's and llama-server's meaning).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# Refused unless absent, null or the value that means "off".
_UNSUPPORTED: dict[str, list[Any]] = {
    "tools": [[], None],
    "functions": [[], None],
    "tool_choice": ["none", None],
    "function_call": ["none", None],
    "logprobs": [False, None],
    "top_logprobs": [0, None],
    "echo": [False, None],
    "best_of": [1, None],
    "suffix": ["", None],
    "logit_bias": [{}, None],
}


@dataclass(frozen=True)
class Common:
    model: str
    params: GenerationParams
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class ChatRequest(Common):
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class CompletionRequest(Common):
    prompt: str


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid(f"the body must be a JSON object, not {_json_type(body)}", code="invalid_json")
    return body


def chat_request(body: dict[str, Any]) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array of messages", "messages")
    parsed = tuple(_message(m, i) for i, m in enumerate(messages))
    return ChatRequest(**_common(body, "max_completion_tokens"), messages=parsed)


def completion_request(body: dict[str, Any]) -> CompletionRequest:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        raise invalid("one prompt per request: 'prompt' holds several", "prompt", "unsupported_value")
    if not isinstance(prompt, str):
        raise invalid(f"'prompt' must be a string, not {_json_type(prompt)}", "prompt")
    return CompletionRequest(**_common(body), prompt=prompt)


def _common(body: dict[str, Any], max_tokens_alias: str | None = None) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' must name a model (GET /v1/models lists them)", "model")
    for name, off in _UNSUPPORTED.items():
        if name in body and not any(_same(body[name], value) for value in off):
            raise invalid(f"'{name}' is not supported by this server", name, "unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise invalid("only a text 'response_format' is supported", "response_format", "unsupported_value")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise invalid("one choice per request: 'n' must be 1", "n", "unsupported_value")
    max_tokens = _integer(body, "max_tokens", None, 1, INT32_MAX)
    if max_tokens is None and max_tokens_alias:
        max_tokens = _integer(body, max_tokens_alias, None, 1, INT32_MAX)
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("'stream_options' must be an object", "stream_options")
    include_usage = _boolean(options or {}, "include_usage", False, "stream_options.include_usage")
    params = GenerationParams(
        max_tokens=INT32_MAX if max_tokens is None else max_tokens,  # the context bounds it
        temperature=_number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, 2.0),
        top_p=_number(body, "top_p", DEFAULT_TOP_P, 0.0, 1.0),
        top_k=_integer(body, "top_k", DEFAULT_TOP_K, 0, INT32_MAX),
        seed=_integer(body, "seed", None, INT64_MIN, INT64_MAX),
        stop=_stops(body.get("stop")),
        ignore_eos=_boolean(body, "ignore_eos", False),
    )
    return {"model": model.strip(), "params": params, "stream": stream, "include_usage": include_usage}


def _message(message: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise invalid(f"{where} must be an object with 'role' and 'content'", where)
    role = message.get("role")
    if role not in ROLES:
        known = ", ".join(sorted(ROLES))
        raise invalid(f"{where}.role must be one of {known}, not {role!r}", f"{where}.role")
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only
        texts = []
        for part in content:
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                raise invalid(f"{where}.content: only text parts are supported", f"{where}.content")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise invalid(f"{where}.content must be a string, not {_json_type(content)}", f"{where}.content")
    return Message(ROLES[role], content)


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("'stop' must be a string or an array of strings", "stop")
    if len(stops) > MAX_STOPS:
        raise invalid(f"'stop' holds {len(stops)} strings; at most {MAX_STOPS}", "stop")
    if any(not s for s in stops):
        raise invalid("'stop' strings must not be empty", "stop")
    return tuple(dict.fromkeys(stops))


def _integer(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{name}' must be an integer, not {_json_type(value)}", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' is {value}; it must be between {low} and {high}", name, "out_of_range")
    return value


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{name}' must be a number, not {_json_type(value)}", name)
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid(f"'{name}' is {value}; it must be between {low:g} and {high:g}", name, "out_of_range")
    return float(value)


def _boolean(body: dict[str, Any], name: str, default: bool, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{param or name}' must be true or false, not {_json_type(value)}", param or name)
    return value


def _same(value: Any, off: Any) -> bool:
    """JSON equality, with true never equal to 1 (Python's bool is an int)."""
    return type(value) is type(off) and value == off if off is not None else value is None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def too_large(limit: int) -> ApiError:
    message = f"the request body is over {limit:,} bytes"
    return ApiError(413, message, ErrorType.INVALID_REQUEST, None, "request_too_large")
