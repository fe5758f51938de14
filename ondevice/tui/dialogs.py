"""Small modal screens: the prompts each model received, and help."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown, TextArea

from ..terminal_text import plain_text

HELP = """\
# ondevice

**Compare** runs one prompt through every model, each in its own column, with live tokens/s,
time to first token, tokens and the model worker's memory.

| key | what it does |
| --- | --- |
| Enter | run the prompt in the box |
| Esc | stop generating |
| Ctrl+R | run the last prompt again |
| Ctrl+T | one model after another (each has the cores) or all at once (they share them) |
| F2 | the exact prompt text each model received |
| F3 | chat with the models |
| F4 | pick the models to compare |
| F5 | measure them: speed (bench) and quality (eval), with plots and past runs |
| F1 | this help |
| Ctrl+Q | quit (every model worker ends) |

A **base** model continues raw text; an **instruct** model gets your prompt inside its chat template.
F2 shows the difference.

In **chat**: Enter sends, Ctrl+J starts a new line (so does Shift+Enter in terminals that tell it
from Enter, such as kitty, WezTerm and foot), Ctrl+B switches between one model and all of them,
Ctrl+N starts over, Ctrl+S saves the transcript as Markdown, Ctrl+O as JSON (with the sampling
settings), Esc goes back.
As in Ollama, `/system TEXT` sets the system prompt and the conversation goes on, `/reset` starts
over, `/help` shows this.

In **bench**: F6 measures speed (pp and tg tokens/s ± stddev, memory), F7 quality against the chosen
reference (PPL, KL divergence, same top token); Esc stops a run at its next step, or goes back.
Every run is saved; Enter on a past run shows it. Speed and quality of different runs show together.
"""


class PromptsScreen(ModalScreen[None]):
    """What each model was given, exactly: raw text for base models, the template for instruct ones."""

    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("f2", "dismiss", "Close")]

    def __init__(self, prompts: list[tuple[str, str | None]]) -> None:
        super().__init__(id="prompts")
        self.prompts = prompts

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label("The exact prompt text each model received (Esc closes)", classes="dialog-title")
            for label, text in self.prompts:
                yield Label(plain_text(label), classes="prompt-model")
                shown = text if text is not None else "(nothing sent yet)"
                yield TextArea(shown, read_only=True, soft_wrap=True, classes="prompt-text")


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Markdown(HELP)
