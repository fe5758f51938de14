"""The compare screen: one prompt, every model answering in its own column."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label

from ..live import RunMode
from ..runtime.engine import Backend, single_turn
from ..runtime.protocol import GenerationParams
from .column import ColumnStatus, ModelColumn


class SettingsError(ValueError):
    """A setting typed into the settings row does not parse."""


class CompareScreen(Screen):
    """Columns side by side, a shared prompt box, and the sampling settings."""

    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "rerun", "Re-run"),
        Binding("ctrl+t", "toggle_mode", "Mode"),
        Binding("f2", "show_prompts", "Prompts"),
        Binding("f3", "app.open_chat", "Chat"),
        Binding("f4", "app.open_picker", "Models"),
        Binding("f1", "app.help", "Help"),
    ]

    def __init__(
        self, carried: dict[str, Backend] | None = None, before: CompareScreen | None = None
    ) -> None:
        super().__init__()
        self.carried = carried or {}  # backends kept from the previous set of models
        self.mode = before.mode if before else RunMode.SEQUENTIAL
        self.last_prompt: str | None = before.last_prompt if before else None
        # What was typed survives a change of models (F4): the prompt and the sampling settings.
        self.typed = {i.id: i.value for i in before.query(Input).results(Input) if i.id} if before else {}
        self._stopping = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="columns"):
            for index, spec in enumerate(self.app.specs):
                yield ModelColumn(spec, index)
        with Horizontal(id="prompt-row"):
            yield Input(placeholder="Type a prompt and press Enter", id="prompt")
        with Horizontal(id="settings"):
            yield Label("temperature", classes="setting-label")
            yield Input(str(self.app.defaults.temperature), id="temperature", classes="setting")
            yield Label("max tokens", classes="setting-label")
            yield Input(str(self.app.defaults.max_tokens), id="max-tokens", classes="setting")
            yield Label("seed", classes="setting-label")
            yield Input(
                "" if self.app.defaults.seed is None else str(self.app.defaults.seed),
                id="seed",
                classes="setting",
                placeholder="random",
            )
            yield Label(self._mode_text(), id="mode")
        yield Footer()

    def on_mount(self) -> None:
        for field in self.query(Input).results(Input):
            if field.id in self.typed:
                field.value = self.typed[field.id]
        self.title = "ondevice compare"
        self.sub_title = " vs ".join(spec.label for spec in self.app.specs)
        for column in self.columns:
            if column.spec.ref in self.carried:
                column.backend = self.carried.pop(column.spec.ref)
                column.status = ColumnStatus.READY
                column.refresh_stats()
            else:
                column.load()
        self.set_interval(0.5, self._poll_memory)
        self.query_one("#prompt", Input).focus()

    @property
    def columns(self) -> list[ModelColumn]:
        return list(self.query(ModelColumn))

    def _mode_text(self) -> str:
        note = (
            "each model has the cores to itself"
            if self.mode is RunMode.SEQUENTIAL
            else "models share the cores"
        )
        return f"mode: {self.mode.value} ({note})"

    def _poll_memory(self) -> None:
        for column in self.columns:
            column.poll_memory()

    # -- settings -------------------------------------------------------------------------

    def params(self) -> GenerationParams:
        """The sampling settings as typed; SettingsError says which one is wrong."""
        values = {s.id: s.value.strip() for s in self.query(".setting").results(Input)}
        try:
            temperature = float(values["temperature"])
            if temperature < 0:
                raise ValueError
        except ValueError:
            raise SettingsError("temperature must be a number ≥ 0") from None
        try:
            max_tokens = int(values["max-tokens"])
            if max_tokens < 1:
                raise ValueError
        except ValueError:
            raise SettingsError("max tokens must be a whole number ≥ 1") from None
        try:
            seed = int(values["seed"]) if values["seed"] else None
        except ValueError:
            raise SettingsError("seed must be a whole number, or empty for random") from None
        defaults = self.app.defaults
        return GenerationParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=defaults.top_p,
            top_k=defaults.top_k,
            seed=seed,
            stop=defaults.stop,
            ignore_eos=defaults.ignore_eos,
        )

    # -- running --------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def submit(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.run_prompt(event.value)

    def run_prompt(self, prompt: str) -> None:
        if any(c.status is ColumnStatus.GENERATING for c in self.columns):
            self.notify("still generating: Esc stops it", severity="warning")
            return
        try:
            params = self.params()
        except SettingsError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        ready = [c for c in self.columns if c.backend is not None]
        if not ready:
            self.notify("no model is loaded yet", severity="warning")
            return
        self.last_prompt = prompt
        self._stopping = False
        requests = []
        for column in ready:
            has_template = bool(column.backend.facts.chat_template)
            requests.append(
                (column, single_turn(column.spec.kind, has_template, prompt, params, self.app.system))
            )
            column.begin()
        if self.mode is RunMode.CONCURRENT:
            for column, request in requests:
                self.run_worker(
                    lambda c=column, r=request: c.stream(r), thread=True, group=f"gen-{column.index}"
                )
        else:
            self.run_worker(lambda: self._run_sequentially(requests), thread=True, group="gen-sequential")

    def _run_sequentially(self, requests: list) -> None:
        for column, request in requests:
            if self._stopping:
                self.app.call_from_thread(column.skip)
            else:
                column.stream(request)

    def on_model_column_chunk(self, chunk: ModelColumn.Chunk) -> None:
        chunk.column.apply(chunk)

    def on_model_column_loaded(self, loaded: ModelColumn.Loaded) -> None:
        loaded.column.status = ColumnStatus.READY
        loaded.column.poll_memory()

    def action_stop(self) -> None:
        self._stopping = True
        for column in self.columns:
            column.stop()

    def action_rerun(self) -> None:
        if self.last_prompt is None:
            self.notify("nothing to re-run yet")
        else:
            self.run_prompt(self.last_prompt)

    def action_toggle_mode(self) -> None:
        self.mode = RunMode.CONCURRENT if self.mode is RunMode.SEQUENTIAL else RunMode.SEQUENTIAL
        self.query_one("#mode", Label).update(self._mode_text())

    def action_show_prompts(self) -> None:
        from .dialogs import PromptsScreen

        self.app.push_screen(PromptsScreen([(c.spec.label, c.prompt_text) for c in self.columns]))
