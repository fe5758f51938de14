"""The bench screen: run `bench` and `eval` from the UI, see the results as a table and two plots.

The top half of this module is Textual-free: how a run reaches the measurement library
(`Measurer`), and how a run's saved dictionary becomes table rows and plot points (`Shown`).
The screen runs the library in a thread worker with a cancel event and posts its progress as
messages; every finished run is saved to the store's history, as the CLI saves it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
from ..measure.bench import BenchSettings, OpenModel, open_worker, run_bench
from ..measure.evaluate import EvalSettings, evaluate
from ..measure.quality import METRICS
from ..measure.results import BenchRun, EvalRun, ModelRecord, Rate
from ..measure.runs import Run, SavedRun, list_runs, load_run, save_run
from ..measure.stats import Estimate
from ..planning.hardware import Hardware, detect_hardware
from ..planning.plan import require_fit_now
from ..progress import Progress, ProgressFn
from ..refs import ResolvedModel, resolve
from ..runtime.protocol import LoadOptions
from ..terminal_text import plain_text
from ..units import format_bytes

Measure = Callable[[ProgressFn, threading.Event], Run]  # one run, as the screen's worker calls it

# -- running (Textual-free) ------------------------------------------------------------------------


class Measurer:
    """How the bench screen reaches the measurement library: references are resolved, each model is
    checked against the memory free now (the compare's models stay loaded, and a measurement loads
    its own copy without mmap), then `run_bench` or `evaluate` runs on them, as the CLI does.

    Tests replace `resolve_ref`, `open_model` and `machine` (or subclass) to measure fake models.
    """

    def __init__(
        self,
        options: LoadOptions | None = None,
        resolve_ref: Callable[[str], ResolvedModel] = resolve,
        open_model: OpenModel = open_worker,
        machine: Callable[[], Hardware] = detect_hardware,
    ) -> None:
        # Measurements load without mmap, so the worker's peak RSS counts the weights.
        self.options = replace(options or LoadOptions(), use_mmap=False)
        self.resolve_ref = resolve_ref
        self.open_model = open_model
        self.machine = machine

    def preflight(self, models: Sequence[ResolvedModel], options: LoadOptions) -> None:
        """Refuse, with the numbers, a model that will not fit next to what is loaded (one at a time)."""
        hw = self.machine()
        advice = "measure fewer models, lower ctx, or drop models from the compare (F4)"
        for model in models:
            require_fit_now(model.display_name, model.summary, options, advice, hw)

    def bench(
        self,
        refs: Sequence[str],
        settings: BenchSettings,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> BenchRun:
        models = [self.resolve_ref(ref) for ref in refs]
        self.preflight(models, settings.options)
        return run_bench(models, settings, on_progress, cancel, self.open_model)

    def evaluate(
        self,
        refs: Sequence[str],
        reference: str | None,
        settings: EvalSettings,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> EvalRun:
        models = [self.resolve_ref(ref) for ref in refs]
        ref_model = self.resolve_ref(reference) if reference else None
        self.preflight(
            [*models, *([ref_model] if ref_model else [])], replace(settings.options, n_ctx=settings.n_ctx)
        )
        return evaluate(models, ref_model, settings, on_progress, cancel)


def bench_settings(options: LoadOptions, n_prompt: int, n_gen: int, repetitions: int) -> BenchSettings:
    """llama-bench's tests with the session's load options; the context grows to fit the tests."""
    needed = max(n_prompt, n_gen + 1)
    return BenchSettings(
        n_prompt, n_gen, repetitions, options=replace(options, n_ctx=max(options.n_ctx, needed))
    )


def eval_metrics(text: str, has_reference: bool) -> tuple[str, ...]:
    """The metrics typed in the box; empty means the CLI's default (ppl, kld, top1 with a reference)."""
    chosen = tuple(m.strip() for m in text.replace(" ", ",").split(",") if m.strip())
    return chosen or (("ppl", "kld", "top1") if has_reference else ("ppl",))


# -- what the table and plots show (Textual-free) --------------------------------------------------


@dataclass(frozen=True)
class ResultRow:
    """One model file's figures in the table: speed from a bench, quality from an eval."""

    key: str  # the file's path: one row per file
    name: str
    quant: str
    size_bytes: int
    bits_per_weight: float
    pp: tuple[float, float] | None = None  # tokens/s: mean, stddev
    tg: tuple[float, float] | None = None
    peak_rss_bytes: int | None = None
    ppl: float | None = None
    kld: tuple[float, float] | None = None  # value, uncertainty
    same_top: float | None = None  # fraction
    ppl_ratio: float | None = None
    follow: tuple[float, float] | None = None  # instruction following, prompt level: strict, loose
    reference: bool = False


def _row(record: ModelRecord, **figures: Any) -> ResultRow:
    return ResultRow(
        key=record.path,
        name=record.name,
        quant=record.quant,
        size_bytes=record.file_size_bytes,
        bits_per_weight=record.bits_per_weight,
        **figures,
    )


def _rate(rate: Rate | None) -> tuple[float, float] | None:
    return (rate.mean, rate.stddev) if rate else None


def _estimate(estimate: Estimate | None) -> tuple[float, float] | None:
    return (estimate.value, estimate.uncertainty) if estimate else None


def speed_rows(run: Run) -> dict[str, ResultRow]:
    """A bench run's results (or an eval run's speed), the first thread count of each model."""
    rows: dict[str, ResultRow] = {}
    for r in run.results if isinstance(run, BenchRun) else run.speed:
        if r.model.path not in rows:
            rows[r.model.path] = _row(
                r.model, pp=_rate(r.pp), tg=_rate(r.tg), peak_rss_bytes=r.memory.peak_rss_bytes
            )
    return rows


def quality_rows(run: Run) -> dict[str, ResultRow]:
    """An eval run's quality results; the reference, when there is one, comes first."""
    rows: dict[str, ResultRow] = {}
    if not isinstance(run, EvalRun):
        return rows
    if run.reference is not None and run.reference_ppl is not None:
        rows[run.reference.path] = _row(
            run.reference, ppl=run.reference_ppl.value, kld=(0.0, 0.0), ppl_ratio=1.0, reference=True
        )
    for q in run.quality:
        rows[q.model.path] = _row(
            q.model,
            ppl=q.ppl.value,
            kld=_estimate(q.kld),
            same_top=q.same_top.value if q.same_top else None,
            ppl_ratio=q.ppl_ratio.value if q.ppl_ratio else None,
        )
    for f in run.follow:
        score = (f.prompt_strict, f.prompt_loose)
        path = f.model.path
        rows[path] = replace(rows[path], follow=score) if path in rows else _row(f.model, follow=score)
    return rows


@dataclass(frozen=True)
class Shown:
    """The runs on screen: the speed figures of one run and the quality figures of another.

    A bench run replaces the speed part, an eval run the quality part (and the speed part too when
    it measured speed). A run about other models than the part it does not replace clears that part,
    so the table never mixes unrelated measurements.
    """

    speed: Run | None = None
    quality: Run | None = None

    def with_run(self, run: Run) -> Shown:
        speed, quality = self.speed, self.quality
        if isinstance(run, BenchRun):
            speed = run
            if quality is not None and not set(speed_rows(run)) & set(quality_rows(quality)):
                quality = None
        else:
            quality = run
            if run.speed:
                speed = run
            elif speed is not None and not set(quality_rows(run)) & set(speed_rows(speed)):
                speed = None
        return Shown(speed, quality)

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys(run.id for run in (self.speed, self.quality) if run is not None))

    def rows(self) -> list[ResultRow]:
        """Every model file once, largest first (the quantization ladder from the top)."""
        rows = speed_rows(self.speed) if self.speed is not None else {}
        for key, q in (quality_rows(self.quality) if self.quality is not None else {}).items():
            if key in rows:
                s = rows[key]
                rows[key] = replace(q, pp=s.pp, tg=s.tg, peak_rss_bytes=s.peak_rss_bytes)
            else:
                rows[key] = q
        return sorted(rows.values(), key=lambda r: (-r.size_bytes, r.name))


def point_labels(rows: Sequence[ResultRow]) -> list[str]:
    """Each point's label: its quantization level, or the model's name where levels repeat."""
    quants = [r.quant for r in rows]
    return [r.quant if quants.count(r.quant) == 1 else r.name for r in rows]


def speed_points(rows: Sequence[ResultRow]) -> list[tuple[str, float, float]]:
    """(label, file size in MB, generation tokens/s) of every row measured for speed."""
    return [
        (label, r.size_bytes / 1e6, r.tg[0])
        for label, r in zip(point_labels(rows), rows, strict=True)
        if r.tg
    ]


def kld_points(rows: Sequence[ResultRow]) -> list[tuple[str, float, float]]:
    """(label, file size in MB, mean KLD against the reference) of every row with a KLD."""
    return [
        (label, r.size_bytes / 1e6, r.kld[0])
        for label, r in zip(point_labels(rows), rows, strict=True)
        if r.kld
    ]


COLUMNS = (
    "model",
    "quant",
    "size",
    "bpw",
    "pp t/s",
    "tg t/s",
    "memory",
    "PPL",
    "KLD",
    "same top",
    "PPL ratio",
    "follow",
)


def short_name(row: ResultRow) -> str:
    """The model's name without its quantization, which has a column of its own."""
    return row.name.removesuffix(f":{row.quant}") or row.name


def table_cells(row: ResultRow) -> dict[str, str]:
    """The row's cells by column, only those it has figures for."""
    cells = {
        "model": short_name(row) + (" (ref)" if row.reference else ""),
        "quant": row.quant,
        "size": format_bytes(row.size_bytes),
        "bpw": f"{row.bits_per_weight:.2f}",
    }
    if row.pp:
        cells["pp t/s"] = f"{row.pp[0]:.1f} ± {row.pp[1]:.1f}"
    if row.tg:
        cells["tg t/s"] = f"{row.tg[0]:.1f} ± {row.tg[1]:.1f}"
    if row.peak_rss_bytes is not None:
        cells["memory"] = format_bytes(row.peak_rss_bytes)
    if row.ppl is not None:
        cells["PPL"] = f"{row.ppl:.3f}"
    if row.kld is not None:
        cells["KLD"] = "reference" if row.reference else f"{row.kld[0]:.4f} ± {row.kld[1]:.4f}"
    if row.same_top is not None:
        cells["same top"] = f"{100 * row.same_top:.1f} %"
    if row.ppl_ratio is not None:
        cells["PPL ratio"] = f"{row.ppl_ratio:.4f}"
    if row.follow is not None:
        cells["follow"] = f"{100 * row.follow[0]:.1f} / {100 * row.follow[1]:.1f} %"
    return cells


def history_label(run: SavedRun) -> str:
    when = run.created[:16].replace("T", " ")
    return f"{run.kind:<5} {when}  {', '.join(run.models) or '(no models)'}"


# -- the screen ------------------------------------------------------------------------------------


def _plot(
    plot: PlotextPlot, points: list[tuple[str, float, float]], title: str, ylabel: str, empty: str
) -> None:
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    plt.xlabel("file size (MB)")
    plt.ylabel(ylabel)
    if not points:
        plt.xticks([])
        plt.yticks([])
        plt.text(empty, 0.5, 0.5, alignment="center")
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        plot.refresh()
        return
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    x_span = (max(xs) - min(xs)) or max(xs) * 0.2 or 1.0
    y_span = (max(ys) - min(ys)) or abs(max(ys)) * 0.2 or 1.0
    # Sizes, speeds and KL divergences are never negative: neither are the axes.
    plt.xlim(max(min(xs) - 0.15 * x_span, 0.0), max(xs) + 0.15 * x_span)
    plt.ylim(max(min(ys) - 0.15 * y_span, 0.0), max(ys) + 0.15 * y_span)
    middle = (min(xs) + max(xs)) / 2
    for label, x, y in points:  # the marker is part of its label, which runs towards the middle
        if x <= middle:
            plt.text(f"● {label}", x, y, alignment="left")
        else:
            plt.text(f"{label} ●", x, y, alignment="right")
    plot.refresh()


class BenchScreen(Screen):
    """Speed and quality runs of the compare's models, their results and the store's past runs."""

    BINDINGS = [
        Binding("escape", "stop_or_back", "Stop/Back"),
        Binding("f6", "run_bench", "Bench"),
        Binding("f7", "run_eval", "Eval"),
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

    def __init__(self) -> None:
        super().__init__(id="bench")
        self.shown = Shown()
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
                            plain_text(f"{s.label}  {s.quant} · {format_bytes(s.size_bytes)}"), s.ref, True
                        )
                        for s in specs
                    ),
                    id="bench-models",
                )
                yield Label("Speed", classes="bench-heading")
                with Horizontal(classes="bench-row"):
                    yield from _setting("pp", "bench-pp", "512")
                    yield from _setting("tg", "bench-tg", "128")
                    yield from _setting("reps", "bench-reps", "5")
                yield Label("Quality", classes="bench-heading")
                with Horizontal(classes="bench-row"):
                    yield Label("reference", classes="bench-label")
                    yield Select[str](
                        ((s.label, s.ref) for s in specs),
                        prompt="none",
                        compact=True,
                        id="bench-reference",
                    )
                with Horizontal(classes="bench-row"):
                    yield from _setting("ctx", "bench-ctx", "512")
                    yield from _setting("chunks", "bench-chunks", "8")
                with Horizontal(classes="bench-row"):
                    yield Label("metrics", classes="bench-label")
                    yield Input(
                        "",
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

    def on_unmount(self) -> None:
        self.cancel.set()  # a run still going stops at its next step

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
        _plot(
            self.query_one("#plot-speed", PlotextPlot),
            speed_points(rows),
            "generation speed vs file size",
            "tg tok/s",
            "no speed yet: F6 runs a bench",
        )
        _plot(
            self.query_one("#plot-kld", PlotextPlot),
            kld_points(rows),
            "KL divergence vs file size",
            "mean KLD",
            "no KLD yet: F7 with a reference",
        )


def _setting(label: str, id: str, value: str) -> ComposeResult:
    yield Label(label, classes="bench-label")
    yield Input(value, id=id, compact=True, type="integer", classes="bench-setting")
