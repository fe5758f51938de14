"""The ondevice terminal UI: compare models side by side, chat with them, pick them, measure them."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from ..live import ModelSpec
from ..runtime.engine import Backend
from ..runtime.protocol import GenerationParams, LoadOptions
from .bench import BenchForm, BenchScreen
from .bench_measurer import Measurer
from .chat import ChatScreen
from .compare import CompareScreen
from .dialogs import HelpScreen
from .picker import Choice, PickerScreen


class NoticeHandler(logging.Handler):
    """Library warnings (from any thread) as warning notices in the app."""

    def __init__(self, app: App) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if threading.get_ident() == self.app._thread_id:
            self.app.notify(message, severity="warning", timeout=15, markup=False)
        else:
            with contextlib.suppress(RuntimeError):  # the app has already stopped
                self.app.call_from_thread(
                    self.app.notify, message, severity="warning", timeout=15, markup=False
                )


class OndeviceApp(App):
    """Built by `ondevice compare`; tests build it with fake backends."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f5", "open_bench", "Bench"),
    ]

    def __init__(
        self,
        specs: list[ModelSpec],
        defaults: GenerationParams | None = None,
        system: str | None = None,
        choices: Callable[[], list[Choice]] | None = None,
        open_spec: Callable[[str], ModelSpec] | None = None,
        options: LoadOptions | None = None,
        measurer: Measurer | None = None,
    ) -> None:
        super().__init__()
        self.specs = specs
        self.defaults = defaults or GenerationParams()
        self.system = system
        self._choices = choices
        self._open_spec = open_spec
        self.open_backends: list[Backend] = []  # every backend a column opened; all closed on exit
        # How the bench screen measures: the library with the session's load options (tests inject one).
        self.measurer = measurer or Measurer(options)
        self._saved_handlers: list[logging.Handler] = []
        self.bench_form = BenchForm()  # F5's settings and results, kept between visits

    def on_mount(self) -> None:
        # The library's warnings become notices; a handler writing to the terminal would draw over the UI.
        logger = logging.getLogger("ondevice")
        self._saved_handlers = logger.handlers[:]
        logger.handlers = [NoticeHandler(self)]
        self.push_screen(CompareScreen())

    @property
    def compare(self) -> CompareScreen:
        return next(s for s in self.screen_stack if isinstance(s, CompareScreen))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_open_chat(self) -> None:
        self.push_screen(ChatScreen(self.compare.columns, self.defaults))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_bench":  # from the compare screen only, not over a dialog or itself
            return isinstance(self.screen, CompareScreen)
        return super().check_action(action, parameters)

    def action_open_bench(self) -> None:
        if any(c.status == "generating" for c in self.compare.columns):
            self.notify("stop generating first (Esc): a benchmark needs the cores", severity="warning")
            return
        self.push_screen(BenchScreen(self.bench_form))

    def model_choices(self) -> list[Choice]:
        """Every model this session can open (the store's and the bundled ones); none without a list."""
        return self._choices() if self._choices is not None else []

    def action_open_picker(self) -> None:
        if self._choices is None or self._open_spec is None:
            self.notify("no model list in this session", severity="warning")
            return
        if any(c.status == "generating" for c in self.compare.columns):
            self.notify("stop generating first (Esc)", severity="warning")
            return
        current = [spec.ref for spec in self.specs]
        self.push_screen(PickerScreen(self._choices(), current), self._apply_picks)

    def _apply_picks(self, refs: list[str] | None) -> None:
        open_spec = self._open_spec
        if refs is None or open_spec is None or refs == [spec.ref for spec in self.specs]:
            return
        added = [ref for ref in refs if ref not in {spec.ref for spec in self.specs}]
        if added:  # resolving (and a first bundled pull) takes seconds: say so at once
            self.notify(f"opening {', '.join(added)}…", markup=False)
        self.run_worker(
            lambda: self._resolve_picks(refs, open_spec), thread=True, group="picker", exit_on_error=False
        )

    def _resolve_picks(self, refs: list[str], open_spec: Callable[[str], ModelSpec]) -> None:
        kept = {spec.ref: spec for spec in self.specs}
        try:
            specs = [kept.get(ref) or open_spec(ref) for ref in refs]
        except Exception as exc:  # resolving is the user's input: show it, keep the app
            self.call_from_thread(self.notify, f"could not add: {exc}", severity="error")
            return
        self.call_from_thread(self._swap_models, specs)

    def _swap_models(self, specs: list[ModelSpec]) -> None:
        """Keep the backends of models still chosen, close the others, rebuild the compare screen."""
        old = self.compare
        carried: dict[str, Backend] = {}
        for column in old.columns:
            if column.backend is not None and column.spec.ref in {s.ref for s in specs}:
                carried[column.spec.ref] = column.backend
                column.backend = None
            elif column.backend is not None:
                column.close_backend()
        self.specs = specs
        self.switch_screen(CompareScreen(carried, old))

    def on_unmount(self) -> None:
        logging.getLogger("ondevice").handlers = self._saved_handlers
        close_all(self.open_backends)


def close_all(backends: list[Backend]) -> None:
    """Stop every answer first, then end the workers side by side: quitting while models generate
    takes about one worker's shutdown, not the sum of them."""
    for backend in backends:
        backend.cancel()
    closers = [threading.Thread(target=backend.close, daemon=True) for backend in backends]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join()
