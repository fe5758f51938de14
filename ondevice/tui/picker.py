"""The model picker: choose up to four models from the store and the bundled sources."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, SelectionList
from textual.widgets.selection_list import Selection

from ..terminal_text import plain_text

MAX_MODELS = 4


@dataclass(frozen=True)
class Choice:
    ref: str
    description: str  # kind, quantization and size, for the list
    aliases: tuple[str, ...] = ()  # other references to the same file, e.g. the `bundled:` it came from

    def matches(self, ref: str) -> bool:
        return ref == self.ref or ref in self.aliases


class PickerScreen(ModalScreen[list[str] | None]):
    """Dismisses with the chosen references (Enter), or None (Esc)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "apply", "Apply", priority=True)]

    def __init__(self, choices: list[Choice], selected: list[str]) -> None:
        super().__init__(id="picker")
        self.choices = choices
        self.selected = selected
        # A model in the compare keeps the reference it was opened with (`bundled:NAME` as often as
        # the store's `NAME:QUANT`), so the picker hands that one back and the loaded worker is kept.
        self._current = {c.ref: next((ref for ref in selected if c.matches(ref)), None) for c in choices}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                f"Models to compare (Space toggles, Enter applies, at most {MAX_MODELS})",
                classes="dialog-title",
            )
            yield SelectionList[str](
                *(
                    Selection(
                        plain_text(f"{c.ref}  {c.description}"), c.ref, self._current[c.ref] is not None
                    )
                    for c in self.choices
                ),
                id="choices",
            )

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_apply(self) -> None:
        chosen = list(self.query_one(SelectionList).selected)
        if not 1 <= len(chosen) <= MAX_MODELS:
            self.notify(f"pick between 1 and {MAX_MODELS} models", severity="error")
            return
        self.dismiss([self._current[ref] or ref for ref in chosen])
