"""Typed records from JSON: rebuild a dataclass (and the dataclasses inside it) from what `asdict`
wrote, checking every field's type, so readers use fields and never guess keys."""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, TypeVar

from .errors import StoreError

T = TypeVar("T")


class RecordError(StoreError):
    """A saved record does not have the shape its dataclass says."""


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """`cls` rebuilt from `data` (as `dataclasses.asdict` produced it); RecordError names the field."""
    return _decode(cls, data, where or cls.__name__)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            if option is type(None) and value is None:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _decode(option, value, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError(errors[0] if errors else f"{where}: unexpected {type(value).__name__}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        hints = _hints(hint)
        fields = {f.name: f for f in dataclasses.fields(hint)}
        unknown = set(value) - set(fields)
        if unknown:
            raise RecordError(f"{where}: unknown keys {sorted(unknown)}")
        kwargs = {}
        for name, field in fields.items():
            if name in value:
                kwargs[name] = _decode(hints[name], value[name], f"{where}.{name}")
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: lacks {name!r}")
        return hint(**kwargs)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        value_hint = args[1] if args else Any
        return {k: _decode(value_hint, v, f"{where}[{k!r}]") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"{where}: expected a number, got {type(value).__name__}")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise RecordError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    if isinstance(hint, type) and issubclass(hint, str):  # a str enum
        try:
            return hint(value)
        except ValueError:
            raise RecordError(f"{where}: {value!r} is not one of {[e.value for e in hint]}") from None
    raise RecordError(f"{where}: cannot read a {hint!r}")
