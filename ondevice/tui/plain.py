"""Names and messages that come from files, models or errors, shown as written: "[" is not markup
(a model called "[/b]" would break the screen) and control characters are visible."""

from __future__ import annotations

from rich.text import Text

from ..terminal_text import visible_controls


def plain(text: str) -> Text:
    return Text(visible_controls(text))
