"""A multi-line message box: Enter sends, Ctrl+J (or Shift+Enter) starts a new line."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class MessageBox(TextArea):
    """A TextArea that sends on Enter, as a chat box does.

    A terminal sends Enter and Shift+Enter as the same byte unless it speaks the kitty keyboard
    protocol, so Ctrl+J (a line feed, distinct from Enter's carriage return everywhere) is the
    newline key that always works; Shift+Enter works where the terminal tells it apart.
    """

    DEFAULT_CSS = """
    MessageBox {
        height: auto;
        min-height: 3;
        max-height: 8;
    }
    """

    # Priority: TextArea handles Enter itself (a newline) before any ordinary binding sees it.
    BINDINGS = [
        Binding("enter", "submit", "Send", priority=True, show=False),
        Binding("ctrl+j,shift+enter", "newline", "New line", show=False),
    ]

    @dataclass
    class Submitted(Message):
        message_box: MessageBox
        value: str

        @property
        def control(self) -> MessageBox:
            return self.message_box

    def __init__(self, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(
            "", soft_wrap=True, show_line_numbers=False, tab_behavior="focus", placeholder=placeholder, id=id
        )

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")
