"""The CLI's one progress display: what it draws for each kind of event, and when it draws nothing."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from ondevice.cli.progress import ProgressDisplay, progress_display, resolve_with_progress
from ondevice.progress import Phase, Progress, Unit
from tests.support.gguf_samples import write_tiny_gguf

SHOW_CURSOR = "\x1b[?25h"  # rich hides the cursor while a bar is live


def console(terminal: bool = True) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120), out


def drawn(out: io.StringIO) -> str:
    return Text.from_ansi(out.getvalue()).plain


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_work_that_reports_nothing_prints_nothing(terminal):
    where, out = console(terminal)
    with progress_display(where) as show:
        show(Progress("convert x to F16", "downloading x", phase=Phase.HANDED_OFF))
        show.pause()
    assert out.getvalue() == ""


def test_resolving_a_local_file_prints_nothing(tmp_path, capsys):
    model = resolve_with_progress(str(write_tiny_gguf(tmp_path / "tiny.gguf")))
    assert model.path.name == "tiny.gguf"
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("event", "count"),
    [
        (Progress("quantize m:F16", "Q8_0 (1/2)", 1_500_000, 3_000_000, Unit.BYTES), "1.5/3.0 MB"),
        (Progress("convert x to F16", "blk.0.attn_q.weight", 7, 30, Unit.TENSORS), " 7/30"),
        (Progress("smollm2", "4 threads: pp512 1/5", 3, 10), " 3/10"),
    ],
    ids=["bytes", "tensors", "steps"],
)
def test_an_event_draws_its_task_step_and_count(event, count):
    where, out = console()
    with progress_display(where) as show:
        show(event)
        assert show.is_open
    assert f"{event.task}: {event.step} " in drawn(out) and count in drawn(out)


def test_a_new_task_replaces_the_last_and_its_unit_decides_the_count():
    where, out = console()
    with progress_display(where) as show:
        show(Progress("base: convert hf:a/b@main to F16", "output.weight", 9, 9, Unit.TENSORS))
        show(Progress("base: quantize b:F16", "Q8_0 (1/1)", 2_000, 4_000, Unit.BYTES))
    last = drawn(out).splitlines()[-1]
    assert last.startswith("base: quantize b:F16: Q8_0 (1/1) ") and "2.0/4.0 kB" in last
    assert "convert" not in last


def test_a_hand_off_or_a_note_closes_the_bar_and_the_next_event_opens_it(capsys):
    where, out = console()
    show = ProgressDisplay(where)
    show(Progress("base: convert hf:a/b@main to F16", "", 0, 9, Unit.TENSORS))
    assert show.is_open
    show(Progress("base: convert hf:a/b@main to F16", "downloading a/b", phase=Phase.HANDED_OFF))
    assert not show.is_open and out.getvalue().count(SHOW_CURSOR) == 1  # the bar gave the terminal back
    show(Progress("base: convert hf:a/b@main to F16", "token_embd.weight", 1, 9, Unit.TENSORS))
    assert show.is_open
    show.note("base: already converted")
    assert not show.is_open and "base: already converted" in capsys.readouterr().err
    show.pause()  # closing twice is harmless


def test_without_a_terminal_progress_is_a_few_lines_not_a_bar(monkeypatch):
    where, out = console(terminal=False)
    clock = iter([100.0, 100.5, 101.0, 106.0, 106.5])
    monkeypatch.setattr("ondevice.cli.progress.time.monotonic", lambda: next(clock))
    with progress_display(where) as show:
        for done in (1, 2, 3, 4):
            show(Progress("eval smollm2", f"follow p{done}", done, 5))
        show(Progress("eval smollm2", "follow p5", 5, 5))
    lines = out.getvalue().splitlines()
    # The first, one 5 s later, and the last: a CI log gets a heartbeat, not 5 lines (or 5 million).
    assert lines == [
        "eval smollm2: follow p1 (1/5)",
        "eval smollm2: follow p4 (4/5)",
        "eval smollm2: follow p5 (5/5)",
    ]
    assert SHOW_CURSOR not in out.getvalue()
