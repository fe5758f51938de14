"""Profile files: TOML read into frozen dataclasses, validated against the dataclass fields.

Every field a profile file may set is a dataclass field with ``metadata=doc(...)``; that text is the
field's documentation (``ondevice profiles show --schema`` prints it). Unknown keys, wrong types,
values out of range, broken TOML and missing files are :class:`ProfileError` with the file, the key
and the line in one message.

Profiles come from two places: the ones shipped with ondevice (``locations.profiles_dir()``) and the
user's (``locations.user_profiles_dir()``); a user file with the same name replaces the shipped one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import locations
from ..errors import OndeviceError
from ..units import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ProfileError", "ProfileSource", "doc", "field_docs", "find_profile", "list_profiles", "load_file"]

KINDS = ("hardware", "models")
T = TypeVar("T")


class ProfileError(OndeviceError):
    """A profile file is missing, is not TOML, or does not match its schema."""


INT32_MAX = 2**31 - 1  # llama.cpp takes these numbers as C ints: a larger one would wrap


def doc(
    text: str,
    *,
    choices: tuple[str, ...] = (),
    minimum: int | None = None,
    maximum: int = INT32_MAX,
    size: bool = False,
) -> dict:
    """Field metadata: its documentation, and the checks beyond its type (every integer has a maximum)."""
    return {"doc": text, "choices": choices, "minimum": minimum, "maximum": maximum, "size": size}


INTERNAL: dict = {"internal": True}  # set by the loader, never by the file


@dataclass(frozen=True)
class ProfileSource:
    """Where a named profile lives."""

    kind: str  # "hardware" or "models"
    name: str
    path: Path
    origin: str  # "shipped" or "user"
    overrides: Path | None = None  # the shipped file a user file replaces


def profile_dirs(kind: str) -> list[tuple[str, Path]]:
    """Search order, later wins: shipped, then the user's."""
    return [("shipped", locations.profiles_dir() / kind), ("user", locations.user_profiles_dir() / kind)]


def list_profiles(kind: str) -> list[ProfileSource]:
    """Every profile of a kind by name; a user profile replaces a shipped one of the same name."""
    found: dict[str, ProfileSource] = {}
    for origin, directory in profile_dirs(kind):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            previous = found.get(path.stem)
            found[path.stem] = ProfileSource(
                kind, path.stem, path, origin, previous.path if previous else None
            )
    return sorted(found.values(), key=lambda s: s.name)


def find_profile(kind: str, name: str) -> ProfileSource:
    """A profile by name, or a path to a .toml file."""
    if name.endswith(".toml") or "/" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file")
        return ProfileSource(kind, path.stem, path, "file")
    known = {s.name: s for s in list_profiles(kind)}
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or 'none'}"
    raise ProfileError(f"no {kind} profile named {name!r}; {hint}")


def load_file(cls: type[T], path: Path, internal: dict[str, Any] | None = None) -> T:
    """Read and validate one profile file into ``cls``; ``internal`` fills the loader-set fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the profile: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column \d+\)", message)
        detail = message[: where.start()].strip() if where else message
        line = f", line {where.group(1)}" if where else ""
        raise ProfileError(f"{path}{line}: not valid TOML: {detail}") from None
    return _build(cls, data, _Where(path, text), (), internal or {})


def field_docs(cls: type, prefix: str = "") -> list[tuple[str, str, str, Any]]:
    """(key, type, documentation, default) for every key a profile file of ``cls`` may set."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.metadata.get("internal"):
            continue
        hint = hints[f.name]
        options = [o for o in _alternatives(hint) if o is not type(None)]
        if len(options) == 1 and is_dataclass(options[0]):
            rows.append((prefix + f.name, "table", f.metadata.get("doc", ""), None))
            rows += field_docs(options[0], f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        rows.append((prefix + f.name, _type_name(hint), f.metadata.get("doc", ""), default))
    return rows


@dataclass(frozen=True)
class _Where:
    path: Path
    text: str

    def line_of(self, table: tuple[str, ...], key: str) -> int | None:
        """The line where ``key`` is set inside ``[table]`` (tomllib keeps no positions)."""
        current: tuple[str, ...] = ()
        pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
        for number, line in enumerate(self.text.splitlines(), start=1):
            header = re.match(r"^\s*\[([^\[\]]+)\]\s*(?:#.*)?$", line)
            if header:
                current = tuple(part.strip().strip("\"'") for part in header.group(1).split("."))
            elif current == table and pattern.match(line):
                return number
        if table:  # a table header line stands for the table itself
            for number, line in enumerate(self.text.splitlines(), start=1):
                if re.match(rf"^\s*\[\s*{re.escape('.'.join((*table, key)))}\s*\]", line):
                    return number
        return None

    def error(self, table: tuple[str, ...], key: str, problem: str) -> ProfileError:
        line = self.line_of(table, key)
        where = f"{self.path}, line {line}" if line else str(self.path)
        return ProfileError(f"{where}: key {'.'.join((*table, key))!r}: {problem}")


def _build(cls: type[T], data: dict[str, Any], where: _Where, table: tuple[str, ...], internal: dict) -> T:
    hints = typing.get_type_hints(cls)
    settable = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in settable:
            close = difflib.get_close_matches(key, settable, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(settable)}"
            raise where.error(table, key, f"unknown key; {hint}")
    values: dict[str, Any] = dict(internal)
    for name, f in settable.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                inside = f" in [{'.'.join(table)}]" if table else ""
                raise ProfileError(f"{where.path}: missing key {'.'.join((*table, name))!r}{inside}")
            continue
        values[name] = _check(hints[name], data[name], f.metadata, where, table, name)
    return cls(**values)


def _check(hint: Any, value: Any, meta: Any, where: _Where, table: tuple[str, ...], key: str) -> Any:
    options = [o for o in _alternatives(hint) if o is not type(None)]
    if len(options) == 1 and is_dataclass(options[0]):
        if not isinstance(value, dict):
            raise where.error(table, key, f"expected a table, got {_describe(value)}")
        return _build(options[0], value, where, (*table, key), {})
    checked = _NO_MATCH
    for option in options:
        checked = _coerce(option, value)
        if checked is not _NO_MATCH:
            break
    if checked is _NO_MATCH:
        wanted = " or ".join(_type_name(o) for o in options)
        raise where.error(table, key, f"expected {wanted}, got {_describe(value)}")
    choices = meta.get("choices") or ()
    for item in checked if isinstance(checked, tuple) else (checked,):
        if choices and item not in choices:
            raise where.error(table, key, f"{item!r} is not one of {', '.join(choices)}")
    minimum = meta.get("minimum")
    for item in checked if isinstance(checked, tuple) else (checked,):
        if isinstance(item, float) and not math.isfinite(item):
            raise where.error(table, key, f"{item} is not a finite number")
        if not isinstance(item, int) or isinstance(item, bool):
            continue
        if minimum is not None and item < minimum:
            raise where.error(table, key, f"{item} is below the minimum {minimum}")
        maximum = meta.get("maximum", INT32_MAX)
        if item > maximum:
            raise where.error(table, key, f"{item} is above the maximum {maximum}")
    if meta.get("size"):
        try:
            parse_size(checked)
        except ValueError as exc:
            raise where.error(table, key, str(exc)) from None
    return checked


_NO_MATCH = object()


def _alternatives(hint: Any) -> list[Any]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return list(typing.get_args(hint))
    return [hint]


def _coerce(hint: Any, value: Any) -> Any:
    """``value`` as ``hint`` wants it, or _NO_MATCH. TOML arrays become tuples; bools are never ints."""
    if hint is bool:
        return value if isinstance(value, bool) else _NO_MATCH
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO_MATCH
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO_MATCH
    if hint is str:
        return value if isinstance(value, str) else _NO_MATCH
    if typing.get_origin(hint) is tuple:
        (item, *_) = typing.get_args(hint)
        if not isinstance(value, list):
            return _NO_MATCH
        items = [_coerce(item, v) for v in value]
        return _NO_MATCH if any(i is _NO_MATCH for i in items) else tuple(items)
    return _NO_MATCH


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}s"
    options = [o for o in _alternatives(hint) if o is not type(None)]
    if len(options) > 1:
        return " or ".join(_type_name(o) for o in options)
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(options[0], getattr(options[0], "__name__", str(options[0])))


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    kind = names.get(type(value), "a table" if isinstance(value, dict) else type(value).__name__)
    shown = repr(value) if not isinstance(value, (dict, list)) else ""
    return f"{kind} {shown}".strip()
