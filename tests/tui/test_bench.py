"""The bench screen, driven by Pilot: the real measurement library on fake model workers, and saved runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Label, OptionList, ProgressBar, Select, SelectionList
from textual_plotext import PlotextPlot

from ondevice.kinds import Kind
from ondevice.live import ModelSpec
from ondevice.measure import MeasureError
from ondevice.measure.results import (
    EvalRun,
    ModelRecord,
    QualityResult,
)
from ondevice.measure.runs import list_runs, save_run
from ondevice.measure.stats import Estimate
from ondevice.planning.hardware import Hardware
from ondevice.progress import Progress
from ondevice.refs import ResolvedModel, resolve
from ondevice.runtime.protocol import BenchTiming, GenerationParams, LoadOptions
from ondevice.tui.app import OndeviceApp
from ondevice.tui.bench import BenchScreen
from ondevice.tui.bench_measurer import Measurer
from ondevice.tui.bench_rows import kld_points, speed_points
from ondevice.tui.dialogs import HELP, HelpScreen
from tests.support.fake_backend import FakeBackend, facts
from tests.support.gguf_samples import write_tiny_gguf
from tests.support.runs import LADDER, saved_bench, saved_eval

SIZE = (120, 36)
NAMES = ("tiny-q8.gguf", "tiny-q4.gguf", "tiny-q2.gguf")


class FakeBenchWorker:
    """Stands in for a model worker in `run_bench`: fixed speeds that fall as the file grows.

    `gate`, when given, makes every step wait for it, so a test can stop a run half way.
    """

    def __init__(self, model: ResolvedModel, gate: threading.Event | None = None) -> None:
        self.facts = facts(None)
        self.size = model.summary.file_size
        self.gate = gate

    def __enter__(self) -> FakeBenchWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def bench(self, test: str, n_tokens: int, n_threads: int | None = None, seed: int = 0) -> BenchTiming:
        if self.gate is not None:
            self.gate.wait(5)
        rate = (4e8 if test == "pp" else 4e7) / self.size  # tokens/s
        return BenchTiming(test, n_tokens, 2, n_tokens / rate, 0.05, 2 * self.size)

    def rss_bytes(self) -> int:
        return 2 * self.size


@pytest.fixture
def tiny_models(tmp_path: Path) -> dict[str, ResolvedModel]:
    """Three small GGUF files of different sizes (1, 2 and 3 layers), resolved as the app would."""
    models = {}
    for layers, name in zip((3, 2, 1), NAMES, strict=True):
        models[name] = resolve(str(write_tiny_gguf(tmp_path / name, n_layers=layers)))
    return models


def bench_app(
    models: dict[str, ResolvedModel], gate: threading.Event | None = None, measurer: Measurer | None = None
) -> OndeviceApp:
    specs = [
        ModelSpec(name, name, Kind.INSTRUCT, "F16", m.summary.file_size, open=lambda: FakeBackend())
        for name, m in models.items()
    ]
    measurer = measurer or Measurer(
        LoadOptions(n_ctx=512),
        resolve_ref=models.__getitem__,
        open_model=lambda model, options: FakeBenchWorker(model, gate),
    )
    return OndeviceApp(specs, defaults=GenerationParams(temperature=0), measurer=measurer)


async def settle(app: OndeviceApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause(0.05)


async def open_bench(app: OndeviceApp, pilot) -> BenchScreen:
    await settle(app, pilot)
    await pilot.press("f5")
    await settle(app, pilot)
    assert isinstance(app.screen, BenchScreen)
    return app.screen


def small_settings(screen: BenchScreen, pp: str = "64", tg: str = "16", reps: str = "2") -> None:
    screen.query_one("#bench-pp", Input).value = pp
    screen.query_one("#bench-tg", Input).value = tg
    screen.query_one("#bench-reps", Input).value = reps


def column(table: DataTable, name: str) -> list[str]:
    keys = [c.key.value for c in table.ordered_columns]
    return [str(table.get_row_at(i)[keys.index(name)]) for i in range(table.row_count)]


async def test_f5_opens_the_bench_screen_and_esc_goes_back(tiny_models):
    app = bench_app(tiny_models)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        assert list(screen.query_one("#bench-models", SelectionList).selected) == list(NAMES)
        assert screen.reference() is None and screen.query_one("#bench-table", DataTable).row_count == 0
        await pilot.press("f5")  # not a second bench screen on top of the first
        assert app.screen is screen and sum(isinstance(s, BenchScreen) for s in app.screen_stack) == 1
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen) and "| F5 |" in HELP
        await pilot.press("escape")
        await pilot.press("escape")
        assert app.screen is app.compare


async def test_settings_survive_a_revisit_and_take_focus_at_once(tiny_models):
    app = bench_app(tiny_models)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        assert app.focused is screen.query_one("#bench-pp", Input)  # typing edits pp, no Tab first
        await pilot.press("ctrl+a", "backspace", "6", "4")
        small_settings(screen, tg="16", reps="2")
        screen.query_one("#bench-chunks", Input).value = "3"
        screen.query_one("#bench-metrics", Input).value = "ppl"
        screen.query_one("#bench-reference", Select).value = NAMES[0]
        screen.query_one("#bench-models", SelectionList).deselect(NAMES[2])
        await pilot.press("f8")  # past runs, one key away
        assert app.focused is screen.query_one("#past-runs", OptionList)
        await pilot.press("escape")
        assert app.screen is app.compare
        again = await open_bench(app, pilot)
        assert again is not screen
        values = [again.query_one(f"#{id}", Input).value for id in ("bench-pp", "bench-tg", "bench-reps")]
        assert values == ["64", "16", "2"]
        assert again.query_one("#bench-chunks", Input).value == "3"
        assert again.query_one("#bench-metrics", Input).value == "ppl"
        assert again.reference() == NAMES[0] and again.chosen_refs() == list(NAMES[:2])


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    """Let the UI run until `condition()` holds: a worker thread's messages arrive when they arrive."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the UI never got there")


def plot_text(screen: BenchScreen, id: str) -> str:
    return str(screen.query_one(f"#{id}", PlotextPlot).render())


async def start_gated_bench(app, pilot) -> tuple[BenchScreen, ProgressBar]:
    """Start a small bench run (F6) and wait until its worker blocks at the first timing, after
    the loading and warm-up steps have been reported."""
    screen = await open_bench(app, pilot)
    small_settings(screen)
    await pilot.press("f6")
    bar = screen.query_one("#bench-progress", ProgressBar)
    await wait_for(pilot, lambda: bar.progress == 1)
    return screen, bar


async def test_a_bench_run_shows_progress_then_fills_the_table_and_plot_and_is_saved(tiny_models):
    gate = threading.Event()
    app = bench_app(tiny_models, gate)
    async with app.run_test(size=SIZE) as pilot:
        screen, bar = await start_gated_bench(app, pilot)
        assert screen.running == "bench" and bar.total == 3 * 7  # 3 models × (load + 2 tests × 3 runs)
        status = str(screen.query_one("#bench-status", Label).render())
        assert "tiny-q8.gguf: 2 threads: warm-up pp · model 1/3" in status
        assert all(button.disabled for button in screen.query("Button"))
        await pilot.press("f6")  # one run at a time
        assert screen.running == "bench"
        gate.set()
        await settle(app, pilot)
        await wait_for(pilot, lambda: screen.running is None and len(screen.history) == 1)

        assert bar.progress == bar.total
        table = screen.query_one("#bench-table", DataTable)
        assert column(table, "model") == list(NAMES)  # largest file first
        tg = [float(cell.split("±")[0]) for cell in column(table, "tg t/s")]
        assert tg == sorted(tg) and all(cell.endswith("±0.0") for cell in column(table, "tg t/s"))
        assert "KLD" not in [c.key.value for c in table.ordered_columns]
        assert [label for label, _, _ in speed_points(screen.shown.rows())] == list(NAMES)
        speed_plot = plot_text(screen, "plot-speed")
        assert all(f"● {name}" in speed_plot or f"{name} ●" in speed_plot for name in NAMES)
        assert "no KLD yet" in plot_text(screen, "plot-kld")

        saved = list_runs()
        assert [(r.kind, r.models) for r in saved] == [("bench", NAMES)]
        assert screen.query_one("#past-runs", OptionList).option_count == 1
        assert f"saved as {saved[0].id}" in str(screen.query_one("#bench-status", Label).render())


async def test_escape_stops_a_run_and_the_ui_stays_responsive(tiny_models):
    gate = threading.Event()
    app = bench_app(tiny_models, gate)
    async with app.run_test(size=SIZE) as pilot:
        screen, _ = await start_gated_bench(app, pilot)
        await pilot.press("escape")
        assert screen.cancel.is_set() and app.screen is screen  # stops the run, stays on the screen
        assert "stopping" in str(screen.query_one("#bench-status", Label).render())
        # The worker is still blocked in the model; the UI answers all the same.
        reps = screen.query_one("#bench-reps", Input)
        reps.focus()
        await pilot.press("end", "backspace", "1")
        assert reps.value == "1" and screen.running == "bench"
        gate.set()
        await settle(app, pilot)
        await wait_for(pilot, lambda: screen.running is None)
        assert "bench stopped; nothing saved" in str(screen.query_one("#bench-status", Label).render())
        assert list_runs() == [] and screen.query_one("#bench-table", DataTable).row_count == 0

        await pilot.press("f6")  # a new run starts and finishes
        await settle(app, pilot)
        await wait_for(pilot, lambda: screen.running is None and len(screen.history) == 1)
        assert screen.query_one("#bench-table", DataTable).row_count == 3
        await pilot.press("escape")
        assert app.screen is app.compare


class FakeEvalMeasurer(Measurer):
    """Quality without models: the KLD grows as the file shrinks. Records what it was asked."""

    def __init__(self, models: dict[str, ResolvedModel], **kwargs) -> None:
        super().__init__(LoadOptions(n_ctx=512), resolve_ref=models.__getitem__, **kwargs)
        self.calls: list[tuple] = []

    def evaluate(self, refs, reference, settings, on_progress=None, cancel=None) -> EvalRun:
        self.calls.append((list(refs), reference, settings))
        models = [self.resolve_ref(ref) for ref in refs]
        ref_model = self.resolve_ref(reference) if reference else None
        for i, model in enumerate(models):
            if cancel is not None and cancel.is_set():
                raise MeasureError("evaluation cancelled")
            if on_progress:
                on_progress(Progress(model.display_name, "chunk 1/1", i, len(models)))
        return EvalRun(
            created="2026-01-02T00:00:00Z",
            machine={},
            llama_cpp_version="test",
            text_source="test",
            n_ctx=settings.n_ctx,
            n_chunks=1,
            reference=ModelRecord.of(ref_model) if ref_model else None,
            reference_ppl=Estimate(10.0, 0.1) if ref_model else None,
            quality=[
                QualityResult(
                    model=ModelRecord.of(m),
                    n_scored=100,
                    ppl=Estimate(10.0 + 1e4 / m.summary.file_size, 0.1),
                    ppl_ratio=Estimate(1.0 + 1e3 / m.summary.file_size, 0.001) if ref_model else None,
                    kld=Estimate(100.0 / m.summary.file_size, 0.001) if ref_model else None,
                    same_top=Estimate(0.9, 0.01) if ref_model else None,
                )
                for m in models
            ],
        )


async def test_an_eval_against_a_reference_fills_kld_and_joins_the_bench(tiny_models):
    measurer = FakeEvalMeasurer(tiny_models, open_model=lambda model, options: FakeBenchWorker(model))
    app = bench_app(tiny_models, measurer=measurer)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        small_settings(screen)
        await pilot.press("f6")
        await settle(app, pilot)
        await wait_for(pilot, lambda: screen.running is None)
        screen.query_one("#bench-reference", Select).value = NAMES[0]
        screen.query_one("#bench-chunks", Input).value = "3"
        await pilot.press("f7")
        await settle(app, pilot)
        await wait_for(pilot, lambda: screen.running is None and len(screen.history) == 2)

        refs, reference, settings = measurer.calls[0]
        assert refs == list(NAMES[1:]) and reference == NAMES[0]  # the reference is not its own model
        assert settings.metrics == ("ppl", "kld", "top1") and (settings.n_ctx, settings.n_chunks) == (512, 3)
        assert not settings.options.use_mmap
        table = screen.query_one("#bench-table", DataTable)
        assert column(table, "model") == [f"{NAMES[0]} (ref)", *NAMES[1:]]
        assert column(table, "KLD")[0] == "reference"
        assert all("±" in cell for cell in column(table, "tg t/s"))  # speed and quality side by side
        assert column(table, "same top")[1:] == ["90.0 %", "90.0 %"]
        klds = kld_points(screen.shown.rows())
        assert [label for label, _, _ in klds] == list(NAMES) and klds[0][2] == 0.0
        assert "no KLD yet" not in plot_text(screen, "plot-kld")
        assert sorted(r.kind for r in list_runs()) == ["bench", "eval"]


async def test_settings_that_do_not_parse_start_nothing(tiny_models):
    app = bench_app(tiny_models)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        small_settings(screen, reps="0")
        await pilot.press("f6")
        assert screen.running is None
        small_settings(screen)
        screen.query_one("#bench-metrics", Input).value = "kld"
        await pilot.press("f7")  # KLD without a reference
        assert screen.running is None
        screen.query_one("#bench-models", SelectionList).deselect_all()
        await pilot.press("f6")
        assert screen.running is None
        await settle(app, pilot)
        messages = [n.message for n in app._notifications]
        assert any("reps must be a whole number ≥ 1" in m for m in messages)
        assert any("kld and top1 compare with a reference: pick one" in m for m in messages)
        assert any("pick at least one model" in m for m in messages)
        assert list_runs() == []


async def test_a_model_that_will_not_fit_is_refused_with_the_numbers(tiny_models):
    full = Hardware(
        os="Linux",
        os_version="test",
        machine="x86_64",
        cpu_model="tiny",
        physical_cores=2,
        logical_cores=2,
        total_ram_bytes=1 << 30,
        available_ram_bytes=64 << 20,  # the compare's models took the rest
    )
    opened = []
    measurer = Measurer(
        LoadOptions(n_ctx=512),
        resolve_ref=tiny_models.__getitem__,
        open_model=lambda model, options: opened.append(model) or FakeBenchWorker(model),
        machine=lambda: full,
    )
    app = bench_app(tiny_models, measurer=measurer)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        small_settings(screen)
        await pilot.press("f6")
        await settle(app, pilot)
        assert screen.running is None and opened == []
        messages = [n.message for n in app._notifications]
        assert any("will not fit" in m and "available after" in m for m in messages), messages
        assert list_runs() == []


# -- saved runs ------------------------------------------------------------------------------------


def ladder_app() -> OndeviceApp:
    specs = [
        ModelSpec(m.name, m.name, Kind.INSTRUCT, m.quant, m.file_size_bytes, open=lambda: FakeBackend())
        for m in LADDER
    ]
    return OndeviceApp(specs, defaults=GenerationParams(temperature=0))


async def pick_past_run(screen: BenchScreen, pilot, index: int) -> None:
    options = screen.query_one("#past-runs", OptionList)
    options.focus()
    options.highlighted = index
    await pilot.press("enter")


async def test_saved_runs_are_listed_and_load_into_the_table_and_plots():
    save_run(saved_bench())
    save_run(saved_eval())
    app = ladder_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        options = screen.query_one("#past-runs", OptionList)
        assert [o.id.rsplit("/", 1)[1] for o in options.options] == [
            "eval-20260101-110000-1.json",
            "bench-20260101-100000-1.json",
        ]
        assert "eval  2026-01-01 11:00  smollm2-135m-instruct:Q8_0" in str(
            options.get_option_at_index(0).prompt
        )
        await pick_past_run(screen, pilot, 1)
        await settle(app, pilot)
        await wait_for(pilot, lambda: screen.shown.ids == ["bench-20260101-100000-1"])
        table = screen.query_one("#bench-table", DataTable)
        assert column(table, "quant") == ["F16", "Q8_0", "Q4_K_M", "Q2_K"]
        assert column(table, "tg t/s")[2] == "52.3±1.3"
        assert "● Q2_K" in plot_text(screen, "plot-speed") or "Q2_K ●" in plot_text(screen, "plot-speed")
        await pick_past_run(screen, pilot, 0)
        await settle(app, pilot)
        await wait_for(pilot, lambda: len(screen.shown.ids) == 2)
        assert column(table, "KLD")[1:] == ["0.0011±0.0000", "0.0212±0.0007", "0.1350±0.0045"]
        assert column(table, "PPL ratio")[3] == "1.1544" and column(table, "tg t/s")[3] == "55.0±1.4"


async def test_a_run_this_version_cannot_read_is_left_out_or_an_error_not_a_crash(isolated_home):
    good = save_run(saved_bench())
    (good.parent / "bench-odd.json").write_text(
        '{"kind": "bench", "id": "bench-odd", "results": [{"model": {"name": "x"}}]}'
    )
    app = ladder_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        await wait_for(pilot, lambda: len(screen.history) == 1)
        assert screen.history[0].path == good  # the odd file is not listed: every field is checked
        good.write_text('{"kind": "bench", "id": "x", "results": [{"model": {"name": "x"}}]}')
        await pick_past_run(screen, pilot, 0)  # it changed since it was listed
        await settle(app, pilot)
        await wait_for(pilot, lambda: bool(app._notifications))
        assert "lacks" in next(iter(app._notifications)).message
        assert screen.shown.ids == [] and screen.query_one("#bench-table", DataTable).row_count == 0


def test_bench_screen_snapshot(snap_compare):
    save_run(saved_bench())
    save_run(saved_eval())
    app = ladder_app()

    async def run_before(pilot) -> None:
        screen = await open_bench(app, pilot)
        await pick_past_run(screen, pilot, 1)
        await settle(app, pilot)
        await pick_past_run(screen, pilot, 0)
        await settle(app, pilot)
        await wait_for(pilot, lambda: len(screen.shown.ids) == 2)
        screen.query_one("#bench-models", SelectionList).focus()

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)


@pytest.mark.models
async def test_real_models_bench_and_eval_from_the_screen(smol, gemma):
    from ondevice.cli.tui_launch import build_app

    app = build_app([gemma, smol], GenerationParams(temperature=0), LoadOptions(n_ctx=512), None)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_bench(app, pilot)
        small_settings(screen, pp="32", tg="8", reps="1")
        await pilot.press("f6")
        await wait_for(pilot, lambda: screen.running is None, timeout=120)
        screen.query_one("#bench-ctx", Input).value = "64"
        screen.query_one("#bench-chunks", Input).value = "1"
        # One model: without a reference, evaluate() scores every model on the first one's tokens,
        # which fails across tokenizers (gemma and SmolLM2 do not share one).
        screen.query_one("#bench-models", SelectionList).deselect(gemma.ref)
        await pilot.press("f7")
        await wait_for(pilot, lambda: screen.running is None, timeout=120)
        await settle(app, pilot)
        status = str(screen.query_one("#bench-status", Label).render())
        table = screen.query_one("#bench-table", DataTable)
        assert table.row_count == 2 and "eval done" in status, status
        assert all(float(cell.split("±")[0]) > 0 for cell in column(table, "tg t/s"))
        assert [cell == "-" for cell in column(table, "PPL")] == [True, False]  # gemma is larger
        assert sorted(r.kind for r in list_runs()) == ["bench", "eval"]


async def test_quality_columns_stay_in_view_at_100_by_30():
    save_run(saved_bench())
    save_run(saved_eval())
    app = ladder_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_bench(app, pilot)
        await pick_past_run(screen, pilot, 1)
        await settle(app, pilot)
        await pick_past_run(screen, pilot, 0)
        await settle(app, pilot)
        await wait_for(pilot, lambda: len(screen.shown.ids) == 2)
        await pilot.pause(0.05)
        table = screen.query_one("#bench-table", DataTable)
        header = "".join(segment.text for segment in table.render_line(0))
        assert "KLD" in header, header  # what is in view without scrolling sideways
        first = "".join(segment.text for segment in table.render_line(2))  # row 2: Q8_0
        assert "0.0011±0.0000" in first and "Q8_0" in first, first
