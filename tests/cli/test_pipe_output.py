"""Tables piped to a file or another program read as they do on a wide terminal: nothing squeezed to
80 columns, cut with "…" or wrapped mid-value (CliRunner's stdout is a pipe, as in `| cat`)."""

from __future__ import annotations

import pytest

from ondevice.measure.runs import save_run
from ondevice.planning import hardware as hardware_module
from ondevice.planning.hardware import Hardware
from tests.support.cli import invoke
from tests.support.runs import saved_bench, saved_eval

LAPTOP_16GB = Hardware(
    os="Linux",
    os_version="Debian 12",
    machine="x86_64",
    cpu_model="Laptop CPU",
    physical_cores=4,
    logical_cores=8,
    total_ram_bytes=16 * 10**9,
    available_ram_bytes=12 * 10**9,
)


@pytest.fixture
def narrow(monkeypatch):
    """A terminal width of 80 columns, as Rich assumes in a pipe."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(hardware_module, "detect_hardware", lambda: LAPTOP_16GB)


def _lines(text: str) -> str:
    """Without the padding Rich puts after a title (its width follows the store's path)."""
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _unsqueezed(text: str) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80  # the full table, not one squeezed to fit


@pytest.mark.models
def test_models_list_in_a_pipe(models_home, narrow, snapshot):
    result = invoke("models", "list")
    assert result.exit_code == 0, result.output
    _unsqueezed(result.stdout)
    for name in ("smollm2-135m-instruct:Q4_1", "gemma-3-270m:Q4_K_M"):
        assert name in result.stdout  # whole, not "smollm2-1…"
    assert _lines(result.stdout.replace(str(models_home), "$ONDEVICE_HOME")) == snapshot


def test_profiles_recommend_in_a_pipe(isolated_home, narrow, snapshot):
    result = invoke("profiles", "recommend", "llama3.2", "--ram", "8G")
    assert result.exit_code == 0, result.output
    _unsqueezed(result.stdout)
    assert _lines(result.stdout) == snapshot


def test_bench_and_eval_runs_in_a_pipe(isolated_home, narrow, snapshot):
    bench, quality = saved_bench(), saved_eval()
    save_run(bench)
    save_run(quality)
    listed = invoke("runs", "list")
    assert listed.exit_code == 0 and bench.id in listed.stdout and quality.id in listed.stdout
    shown = invoke("runs", "show", bench.id)
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.stdout and shown.stdout == bench.to_markdown()  # as `ondevice bench` printed it
    assert shown.stdout == snapshot
    evaluated = invoke("runs", "show", "eval-")  # a unique prefix is enough
    assert evaluated.exit_code == 0 and evaluated.stdout == quality.to_markdown()
    csv_lines = invoke("runs", "show", bench.id, "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("model,") and len(csv_lines) == 1 + 2 * len(bench.results)
