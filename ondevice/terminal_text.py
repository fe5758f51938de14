"""Model output made safe to show on a terminal.

A model can emit any character, and an ESC would begin an escape sequence the terminal obeys
(colours, cursor moves, even clipboard writes). Shown text keeps newlines and tabs; every other
control character appears as its Unicode control picture (␛, ␇, …), the C1 range as U+FFFD.
"""

from __future__ import annotations

from rich.text import Text

_PICTURES = {c: chr(0x2400 + c) for c in range(0x20) if chr(c) not in "\n\t"}
_PICTURES[0x7F] = "\u2421"
_PICTURES.update({c: "\ufffd" for c in range(0x80, 0xA0)})


def visible_controls(text: str) -> str:
    """`text` with its control characters (but newlines and tabs) replaced by visible ones."""
    return text.translate(_PICTURES)


def plain_text(text: str) -> Text:
    """`text` for a Rich or Textual widget, shown as written: "[" is not markup (a model named "[/b]"
    would break a table or a screen) and control characters are visible."""
    return Text(visible_controls(text))


def valid_utf8(text: str) -> tuple[str, bool]:
    """`text` with bytes that were not UTF-8 (which Python keeps as lone surrogates in argv and
    terminal input) replaced by U+FFFD, and whether anything was replaced."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode(
            "utf-8", "replace"
        ).decode("utf-8"), True
