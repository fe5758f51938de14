"""The texts ondevice reads whole, to measure on or to calibrate with: a user's file, or `eval`'s
offline default, Python's pydoc topics (the language reference's sections, written for `help()`)."""

from __future__ import annotations

from pathlib import Path

from .errors import OndeviceError

PYDOC_TOPICS = "pydoc_data.topics"


def pydoc_topics() -> str:
    """Every pydoc topic, in key order, blank-line separated (ImportError on a Python without them)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text(path: str | Path, error: type[OndeviceError] = OndeviceError) -> tuple[str, str]:
    """A text file (undecodable bytes replaced) and its name; `error` in one line when unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace"), Path(path).name
    except OSError as exc:
        raise error(f"cannot read the text {path}: {exc.strerror or exc}") from None
