"""The chat screen: a conversation with one model, or the same turn sent to every model."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

from .. import locations
from ..chat_input import ChatCommand, parse_line
from ..errors import OndeviceError
from ..live import LiveStats, stream_batched
from ..prompting import Message as ChatMessage
from ..runtime.engine import chat_turn
from ..runtime.protocol import Finished, GenerationParams, PromptReady
from ..terminal_text import plain_text
from ..transcript import Transcript, Turn
from .column import ModelColumn
from .message_box import MessageBox
from .stream_text import StreamText


class Bubble(Vertical):
    """One message in the log: who speaks, the text (streamed in cheaply), and figures once done."""

    def __init__(self, who: str, text: str, role: str) -> None:
        super().__init__(classes=f"bubble {role}")
        self.who, self.role = who, role
        self._text, self._footer = text, ""  # until composed: a reply can come first

    def compose(self) -> ComposeResult:
        yield Static(plain_text(f"{self.who}:"), classes="bubble-who")
        yield StreamText(self._text, auto_scroll=False, classes="bubble-text")
        yield Static(self._footer, classes="bubble-footer", markup=False)

    @property
    def text(self) -> str:
        shown = self.query(StreamText)
        return shown.first().text if shown else self._text

    def add(self, text: str, footer: str | None = None) -> None:
        shown = self.query(StreamText)
        if shown:
            shown.first().append(text)
        else:
            self._text += text
        if footer is not None:
            self._footer = footer
            for widget in self.query(".bubble-footer").results(Static):
                widget.update(footer)
            self.add_class("finished")


class ChatScreen(Screen):
    """Multi-turn chat over the compare screen's loaded models."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+b", "switch_target", "One/all"),
        Binding("ctrl+n", "reset", "Reset"),
        Binding("ctrl+s", "save('md')", "Save .md"),
        Binding("ctrl+o", "save('json')", "Save .json"),
        Binding("f1", "app.help", "Help"),
    ]

    @dataclass
    class Reply(Message):
        widget: Bubble
        column: ModelColumn
        text: str
        finished: Finished | None = None
        error: str | None = None

    class Done(Message):
        """Every model has answered the turn."""

    def __init__(self, columns: list[ModelColumn], params: GenerationParams | None = None) -> None:
        super().__init__(id="chat")
        self.columns = columns
        self.params = params or GenerationParams()
        self.target: int | None = None  # None: every model
        self.histories: dict[str, list[ChatMessage]] = {c.spec.label: [] for c in columns}
        self.transcript = Transcript(models=[c.spec.label for c in columns], sampling=asdict(self.params))
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="chat-log")
        with Horizontal(id="chat-controls"):
            yield Label(self._target_text(), id="target")
            yield Input(placeholder="system prompt (Enter sets it; the conversation goes on)", id="system")
        yield MessageBox("Say something: Enter sends, Ctrl+J starts a new line", id="chat-input")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "ondevice chat"
        self.query_one("#chat-input", MessageBox).focus()

    def _targets(self) -> list[ModelColumn]:
        chosen = self.columns if self.target is None else [self.columns[self.target]]
        return [c for c in chosen if c.backend is not None]

    def _target_text(self) -> Text:
        if self.target is None:
            return plain_text("to: all models")
        return plain_text(f"to: {self.columns[self.target].spec.label}")

    # -- actions ---------------------------------------------------------------------------

    def action_back(self) -> None:
        if self.busy:
            for column in self.columns:
                if column.backend is not None:
                    column.backend.cancel()
        else:
            self.app.pop_screen()

    def action_switch_target(self) -> None:
        order: list[int | None] = [None, *range(len(self.columns))]
        self.target = order[(order.index(self.target) + 1) % len(order)]
        self.query_one("#target", Label).update(self._target_text())

    def action_reset(self) -> None:
        for history in self.histories.values():
            history.clear()
        self.transcript = Transcript(
            models=self.transcript.models, system=self.transcript.system, sampling=self.transcript.sampling
        )
        self.query_one("#chat-log").remove_children()
        self.notify("conversation reset")

    def action_save(self, fmt: str) -> None:
        path = locations.transcripts_dir() / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        try:
            self.transcript.save(path)
        except (OndeviceError, OSError) as exc:
            self.notify(f"could not save: {exc}", severity="error", markup=False)
            return
        self.notify(f"saved {path}", markup=False)
        self.saved_path = path

    @on(Input.Submitted, "#system")
    def set_system(self, event: Input.Submitted) -> None:
        self._set_system(event.value)

    def _set_system(self, text: str) -> None:
        """As Ollama's /system: the next turns carry the new prompt, the conversation goes on."""
        self.transcript.system = text.strip() or None
        self.query_one("#system", Input).value = self.transcript.system or ""
        done = "set" if self.transcript.system else "cleared"
        self.notify(f"system prompt {done}; the conversation goes on")

    def _command(self, text: str) -> bool:
        """Run a slash command typed as a message; False when the text is a message."""
        line = parse_line(text)
        if line.command is None:
            return False
        if line.command is ChatCommand.SYSTEM:
            self._set_system(line.text)
        elif line.command is ChatCommand.RESET:
            self.action_reset()
        elif line.command is ChatCommand.HELP:
            self.app.action_help()
        elif line.command is ChatCommand.EXIT:
            self.action_back()
        else:
            self.notify(f"unknown command {line.word}; /help lists them", severity="warning", markup=False)
        return True

    @on(MessageBox.Submitted, "#chat-input")
    def send(self, event: MessageBox.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self._command(text):
            event.message_box.value = ""
            return
        if self.busy:
            self.notify("still answering: Esc stops it", severity="warning")
            return
        targets = self._targets()
        if not targets:
            self.notify("no model is loaded yet", severity="warning")
            return
        event.message_box.value = ""
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(Bubble("you", text, "user"))
        self.transcript.turns.append(Turn("user", text))
        jobs = []
        params = self.params
        system = self.transcript.system
        for column in targets:
            history = self.histories[column.spec.label]
            history.append(ChatMessage("user", text))
            messages = ([ChatMessage("system", system)] if system else []) + history
            bubble = Bubble(column.spec.label, "", "assistant")
            log.mount(bubble)
            jobs.append(
                (column, bubble, chat_turn(bool(column.backend.facts.chat_template), messages, params))
            )
        log.scroll_end(animate=False)
        self.busy = True
        self.run_worker(lambda: self._answer(jobs), thread=True, group="chat")

    def _answer(self, jobs: list) -> None:
        """One model after another, so each answer's speed is that model's alone (worker thread)."""
        for column, bubble, request in jobs:

            def emit(
                text: str, prompt: PromptReady | None, finished: Finished | None, c=column, b=bubble
            ) -> None:
                self.post_message(self.Reply(b, c, text, finished))

            try:
                stream_batched(column.backend, request, LiveStats(), emit)
            except OndeviceError as exc:
                self.post_message(self.Reply(bubble, column, "", error=str(exc)))
        self.post_message(self.Done())

    def on_chat_screen_done(self) -> None:
        self.busy = False

    def on_chat_screen_reply(self, reply: ChatScreen.Reply) -> None:
        if reply.error is not None:
            reply.widget.add("", footer=f"error: {reply.error}")
            self.histories[reply.column.spec.label].pop()
        elif reply.finished is not None:
            stats = reply.finished.stats
            footer = (
                f"{stats.generation_tps:.1f} tok/s · {stats.generated_tokens} tok · {stats.stop_reason.value}"
            )
            reply.widget.add(reply.text, footer=footer)
            answer = reply.finished.text
            self.histories[reply.column.spec.label].append(ChatMessage("assistant", answer))
            self.transcript.turns.append(
                Turn("assistant", answer, reply.column.spec.label, stats.generation_tps)
            )
        else:
            reply.widget.add(reply.text)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
