"""Errors the API answers with, shaped as OpenAI's: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorType(str, Enum):
    """OpenAI's error types (the `type` field); clients branch on them."""

    INVALID_REQUEST = "invalid_request_error"  # the client's request is at fault (4xx)
    AUTHENTICATION = "authentication_error"
    NOT_FOUND = "not_found_error"
    RATE_LIMIT = "rate_limit_error"  # 429: the model's queue is full
    SERVER = "server_error"  # ours (5xx): a worker that died, a model that does not fit


class ApiError(Exception):
    """A request answered with an error: the HTTP status and the body's fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: ErrorType = ErrorType.INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: ErrorType, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type.value, "param": param, "code": code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """400: the request's content is wrong (a type, a range, a field we do not support)."""
    return ApiError(400, message, ErrorType.INVALID_REQUEST, param, code)
