"""The bench screen: run `bench` and `eval` from the UI, see the results as a table and two plots.

The screen runs the measurement library (`bench_measurer`) in a thread worker with a cancel event and
posts its progress as messages; every finished run is saved to the store's history, as the CLI saves
it. What the table and plots show is `bench_rows`'s, how a plot is drawn `bench_plot`'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    OptionList,
    ProgressBar,
    Select,
    SelectionList,
)
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection
from textual_plotext import PlotextPlot

from ..errors import OndeviceError
from ..measure import MeasureError
from ..measure.evaluate import EvalSettings
from ..measure.quality import METRICS
from ..measure.runs import Run, SavedRun, list_runs, load_run, save_run
from ..progress import Progress
from ..terminal_text import plain_text
from ..units import format_bytes
from .bench_measurer import Measure, bench_settings, eval_metrics
from .bench_plot import plot_points
from .bench_rows import (
    COLUMNS,
    Shown,
    history_label,
    kld_points,
    reference_options,
    speed_points,
    table_cells,
)

SETTINGS = ("bench-pp", "bench-tg", "bench-reps", "bench-ctx", "bench-chunks", "bench-metrics")


@dataclass
class BenchForm:
    """What the bench screen keeps between visits: the settings as typed and the results shown."""

    values: dict[str, str] = field(default_factory=dict)  # setting id -> text
    reference: str | None = None
    unticked: set[str] = field(default_factory=set)  # models taken out of the measurement
    shown: Shown = field(default_factory=Shown)


class BenchScreen(Screen):
    """Speed and quality runs of the compare's models, their results and the store's past runs."""

    BINDINGS = [
        Binding("escape", "stop_or_back", "Stop/Back"),
        Binding("f6", "run_bench", "Bench"),
        Binding("f7", "run_eval", "Eval"),
        Binding("f8", "past_runs", "Past runs"),
        Binding("f1", "app.help", "Help"),
    ]

    @dataclass
    class Stepped(Message):
        progress: Progress

    @dataclass
    class Finished(Message):
        """A run ended: saved (run and path), stopped (cancelled) or failed (error)."""

        run: Run | None = None
        path: Path | None = None
        error: str | None = None
        cancelled: bool = False

    @dataclass
    class HistoryRead(Message):
        runs: list[SavedRun] = field(default_factory=list)

    @dataclass
    class RunRead(Message):
        run: Run | None = None
        error: str | None = None

    def __init__(self, form: BenchForm | None = None) -> None:
        super().__init__(id="bench")
        self.form = form or BenchForm()
        self.shown = self.form.shown
        self.running: str | None = None  # "bench" or "eval" while a run is in progress
        self.cancel = threading.Event()
        self.history: list[SavedRun] = []
        self._tasks: list[str] = []  # models in the order their progress arrived
        self._n_models = 0

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        specs = self.app.specs
        yield Header()
        with Horizontal(id="bench-body"):
            with Vertical(id="bench-controls"):
                yield Label("Models (Space toggles)", classes="bench-heading")
                yield SelectionList[str](
                    *(
                        Selection(
                            plain_text(f"{s.label}  {s.quant} · {format_bytes(s.size_bytes)}"),
                            s.ref,
                            s.ref not in self.form.unticked,
                        )
                        for s in specs
                    ),
                    id="bench-models",
                )
                yield Label("Speed", classes="bench-heading")
                with Horizontal(classes="bench-row"):
                    yield from self._setting("pp", "bench-pp", "512")
                    yield from self._setting("tg", "bench-tg", "128")
                    yield from self._setting("reps", "bench-reps", "5")
                yield Label("Quality", classes="bench-heading")
                with Horizontal(classes="bench-row"):
                    yield Label("reference", classes="bench-label")
                    options = reference_options(specs, self.app.model_choices())
                    self._reference_values = {value for _, value in options}
                    yield Select[str](
                        options,
                        prompt="none",
                        compact=True,
                        id="bench-reference",
                    )
                with Horizontal(classes="bench-row"):
                    yield from self._setting("ctx", "bench-ctx", "512")
                    yield from self._setting("chunks", "bench-chunks", "8")
                with Horizontal(classes="bench-row"):
                    yield Label("metrics", classes="bench-label")
                    yield Input(
                        self.form.values.get("bench-metrics", ""),
                        placeholder="auto: " + ",".join(m for m in METRICS if m != "follow"),
                        compact=True,
                        id="bench-metrics",
                        classes="bench-setting wide",
                    )
                with Horizontal(classes="bench-row bench-buttons"):
                    yield Button("Bench (F6)", id="run-bench", compact=True, variant="primary")
                    yield Button("Eval (F7)", id="run-eval", compact=True, variant="primary")
                yield Label("Past runs (Enter loads)", classes="bench-heading")
                yield OptionList(id="past-runs")
            with Vertical(id="bench-results"):
                yield Label("F6 measures speed, F7 quality; or load a past run.", id="bench-status")
                yield ProgressBar(total=100, show_eta=False, id="bench-progress")
                yield DataTable(id="bench-table", cursor_type="row", zebra_stripes=True)
                with Horizontal(id="bench-plots"):
                    yield PlotextPlot(id="plot-speed", classes="bench-plot")
                    yield PlotextPlot(id="plot-kld", classes="bench-plot")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "ondevice bench"
        self.sub_title = " vs ".join(spec.label for spec in self.app.specs)
        self.query_one("#bench-progress", ProgressBar).display = False  # shown while a run goes
        self.show_results()
        self.read_history()
        if self.form.reference in self._reference_values:
            self.query_one("#bench-reference", Select).value = self.form.reference
        self.query_one("#bench-pp", Input).focus()  # type a setting straight away; F6/F7 run

    def on_unmount(self) -> None:
        self.cancel.set()  # a run still going stops at its next step

    def keep_form(self) -> None:
        """Remember the settings and results for the next visit (the app keeps the form)."""
        form = self.form
        form.values = {id: self.query_one(f"#{id}", Input).value for id in SETTINGS}
        form.reference = self.reference()
        ticked = set(self.query_one("#bench-models", SelectionList).selected)
        form.unticked = {s.ref for s in self.app.specs if s.ref not in ticked}
        form.shown = self.shown

    def _setting(self, label: str, id: str, value: str) -> ComposeResult:
        yield Label(label, classes="bench-label")
        yield Input(
            self.form.values.get(id, value), id=id, compact=True, type="integer", classes="bench-setting"
        )

    def action_past_runs(self) -> None:
        self.query_one("#past-runs", OptionList).focus()

    # -- settings ---------------------------------------------------------------------------

    def _number(self, id: str, name: str, low: int) -> int:
        """The whole number typed in a setting; MeasureError names the setting when it is not one."""
        try:
            value = int(self.query_one(f"#{id}", Input).value.strip())
        except ValueError:
            value = low - 1
        if value < low:
            raise MeasureError(f"{name} must be a whole number ≥ {low}")
        return value

    def chosen_refs(self) -> list[str]:
        chosen = set(self.query_one("#bench-models", SelectionList).selected)
        return [spec.ref for spec in self.app.specs if spec.ref in chosen]  # in the compare's order

    def reference(self) -> str | None:
        value = self.query_one("#bench-reference", Select).value
        return value if isinstance(value, str) else None

    # -- running ----------------------------------------------------------------------------

    def action_run_bench(self) -> None:
        if not self._can_start():
            return
        refs = self.chosen_refs()
        try:
            if not refs:
                raise MeasureError("pick at least one model")
            measurer = self.app.measurer
            n_prompt, n_gen = self._number("bench-pp", "pp", 0), self._number("bench-tg", "tg", 0)
            if n_prompt + n_gen == 0:
                raise MeasureError("nothing to measure: pp or tg must be above 0")
            settings = bench_settings(
                measurer.options, n_prompt, n_gen, self._number("bench-reps", "reps", 1)
            )
            settings.check()
        except MeasureError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self._start(
            "bench", len(refs), lambda progress, cancel: measurer.bench(refs, settings, progress, cancel)
        )

    def action_run_eval(self) -> None:
        if not self._can_start():
            return
        reference = self.reference()
        refs = [ref for ref in self.chosen_refs() if ref != reference]
        try:
            if not refs:
                raise MeasureError("pick at least one model besides the reference")
            measurer = self.app.measurer
            metrics = eval_metrics(self.query_one("#bench-metrics", Input).value, reference is not None)
            if reference is None and {"kld", "top1"} & set(metrics):
                raise MeasureError("kld and top1 compare with a reference: pick one")
            settings = EvalSettings(
                metrics=metrics,
                n_ctx=self._number("bench-ctx", "ctx", 8),
                n_chunks=self._number("bench-chunks", "chunks", 1),
                options=measurer.options,
            )
            settings.check(reference is not None)
        except MeasureError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self._start(
            "eval",
            len(refs) + (reference is not None),
            lambda progress, cancel: measurer.evaluate(refs, reference, settings, progress, cancel),
        )

    def _can_start(self) -> bool:
        if self.running is not None:
            self.notify(f"the {self.running} is still running: Esc stops it", severity="warning")
            return False
        return True

    def _start(self, kind: str, n_models: int, measure: Measure) -> None:
        self.running = kind
        self.cancel = threading.Event()
        self._tasks, self._n_models = [], n_models
        self._set_busy(True)
        self._status(f"{kind}: starting…")
        bar = self.query_one("#bench-progress", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        cancel = self.cancel
        self.run_worker(
            lambda: self._measure(measure, cancel), thread=True, group="measure", exit_on_error=False
        )

    def _measure(self, measure: Measure, cancel: threading.Event) -> None:
        """In a worker thread: run, save to the store's history, post what happened."""
        try:
            run = measure(lambda progress: self.post_message(self.Stepped(progress)), cancel)
        except OndeviceError as exc:
            self.post_message(self.Finished(error=str(exc), cancelled=cancel.is_set()))
            return
        except Exception as exc:  # a bug must not leave the screen waiting forever: show it
            self.post_message(self.Finished(error=f"{type(exc).__name__}: {exc}", cancelled=cancel.is_set()))
            raise
        try:
            path: Path | None = save_run(run)
            error = None
        except (OSError, OndeviceError) as exc:  # the figures are still worth showing
            path, error = None, f"could not save the run: {exc}"
        self.post_message(self.Finished(run=run, path=path, error=error))

    def on_bench_screen_stepped(self, message: Stepped) -> None:
        p = message.progress
        if self.running is None:
            return
        bar = self.query_one("#bench-progress", ProgressBar)
        total = max(p.total or 0, 1)  # measurements always know their total
        if self.running == "bench":  # the library counts steps per model: add up the models
            if p.task not in self._tasks:
                self._tasks.append(p.task)
            index = self._tasks.index(p.task)
            bar.update(total=total * max(self._n_models, 1), progress=index * total + p.done)
            where = f" · model {index + 1}/{self._n_models}"
        else:
            bar.update(total=total, progress=p.done)
            where = ""
        stopping = " (stopping…)" if self.cancel.is_set() else ""
        self._status(f"{self.running}: {p.task}: {p.step}{where}{stopping}")

    def on_bench_screen_finished(self, message: Finished) -> None:
        kind, self.running = self.running, None
        self._set_busy(False)
        self.query_one("#bench-progress", ProgressBar).display = False
        if message.run is not None:
            if message.path is not None:
                self._status(f"{kind} done, saved as {message.run.id}")
            else:
                self._status(f"{kind} done; {message.error}", error=True)
            self.show_run(message.run)
            self.read_history()
        elif message.cancelled:
            self._status(f"{kind} stopped; nothing saved")
        else:
            self._status(f"{kind} failed: {message.error}", error=True)
            self.notify(message.error or "failed", severity="error", markup=False)

    def action_stop_or_back(self) -> None:
        if self.running is not None:
            self.cancel.set()
            self._status(f"{self.running}: stopping after the current step…")
        else:
            self.keep_form()
            self.app.pop_screen()

    @on(Button.Pressed, "#run-bench")
    def _bench_pressed(self) -> None:
        self.action_run_bench()

    @on(Button.Pressed, "#run-eval")
    def _eval_pressed(self) -> None:
        self.action_run_eval()

    def _set_busy(self, busy: bool) -> None:
        for button in self.query(Button).results(Button):
            button.disabled = busy

    def _status(self, text: str, error: bool = False) -> None:
        label = self.query_one("#bench-status", Label)
        label.update(plain_text(text))
        label.set_class(error, "error")

    # -- past runs --------------------------------------------------------------------------

    def read_history(self) -> None:
        self.run_worker(
            lambda: self.post_message(self.HistoryRead(list_runs())),
            thread=True,
            group="history",
            exclusive=True,
            exit_on_error=False,
        )

    def on_bench_screen_history_read(self, message: HistoryRead) -> None:
        self.history = message.runs
        options = self.query_one("#past-runs", OptionList)
        options.clear_options()
        options.add_options(
            [Option(plain_text(history_label(run)), id=str(run.path)) for run in self.history]
        )

    @on(OptionList.OptionSelected, "#past-runs")
    def _past_run_selected(self, event: OptionList.OptionSelected) -> None:
        path = Path(event.option.id or "")
        self.run_worker(lambda: self._read_run(path), thread=True, group="history-run", exit_on_error=False)

    def _read_run(self, path: Path) -> None:
        try:
            run = load_run(path)  # every field checked: a run that loads can be shown
        except OndeviceError as exc:
            self.post_message(self.RunRead(error=str(exc)))
        else:
            self.post_message(self.RunRead(run))

    def on_bench_screen_run_read(self, message: RunRead) -> None:
        if message.run is None:
            self.notify(message.error or "cannot read the run", severity="error", markup=False)
            return
        self.show_run(message.run)
        self._status(f"showing {', '.join(self.shown.ids)}")

    # -- results ----------------------------------------------------------------------------

    def show_run(self, run: Run) -> None:
        self.shown = self.shown.with_run(run)
        self.show_results()

    def show_results(self) -> None:
        rows = self.shown.rows()
        cells = [table_cells(row) for row in rows]
        columns = [c for c in COLUMNS if c in ("model", "quant", "size", "bpw") or any(c in r for r in cells)]
        table = self.query_one("#bench-table", DataTable)
        table.clear(columns=True)
        for column in columns:
            table.add_column(column, key=column)
        for row, row_cells in zip(rows, cells, strict=True):
            table.add_row(*(plain_text(row_cells.get(c, "-")) for c in columns), key=row.key)
        plot_points(
            self.query_one("#plot-speed", PlotextPlot),
            speed_points(rows),
            "generation speed vs file size",
            "tg tok/s",
            "no speed yet: F6 runs a bench",
        )
        plot_points(
            self.query_one("#plot-kld", PlotextPlot),
            kld_points(rows),
            "KL divergence vs file size",
            "mean KLD",
            "no KLD yet: F7 with a reference",
        )
