"""Surviving llama.cpp's extra-buffer-type crash (AMX CPUs), with real workers dying by real signals.

The fault is injected in the worker behind a test-only switch (ONDEVICE_TEST_FAULT), so these tests run
the same on every CPU; on a CPU with the real crash the rest of the suite exercises it too.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from ondevice.errors import WorkerError
from ondevice.kinds import Kind
from ondevice.runtime import build, extra_bufts
from ondevice.runtime.engine import WorkerModel, single_turn
from ondevice.runtime.faults import FAULT_ENV
from ondevice.runtime.protocol import ExtraBufts, GenerationParams, LoadOptions
from tests.support.cli import invoke, one_error_line

GREEDY = GenerationParams(max_tokens=8, temperature=0)
REBUILD = 'CMAKE_ARGS="-DGGML_RPC=on" pip install --no-cache-dir --force-reinstall llama-cpp-python==0.3.36'


@pytest.fixture
def fresh_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the fallback notice as a new process would."""
    monkeypatch.setattr(extra_bufts, "_announced", set())


def _fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "extra CPU buffer types crashed" in r.getMessage()]


# -- the verdict -------------------------------------------------------------------------------


def test_auto_is_on_until_a_crash_is_recorded_for_this_cpu_and_build(monkeypatch):
    assert extra_bufts.recorded() is None
    assert extra_bufts.settle(LoadOptions()).extra_bufts is ExtraBufts.ON
    verdict = extra_bufts.record_crash("a worker died by SIGILL")
    assert extra_bufts.recorded() == verdict and verdict.build == build.build_id()
    assert extra_bufts.settle(LoadOptions()).extra_bufts is ExtraBufts.OFF
    assert not extra_bufts.use_extra_bufts()
    # An explicit setting is kept as given.
    assert extra_bufts.settle(LoadOptions(extra_bufts=ExtraBufts.ON)).extra_bufts is ExtraBufts.ON
    # Another build of llama.cpp (a rebuild, an upgrade) starts again from on.
    monkeypatch.setattr(build, "build_id", lambda: "0.3.37+other")
    assert extra_bufts.recorded() is None and extra_bufts.use_extra_bufts()


def test_a_corrupt_state_file_reads_as_no_verdict_and_is_replaced(isolated_home):
    extra_bufts.record_crash("SIGILL")
    (isolated_home / "state" / "extra-bufts.json").write_text("{not json")
    assert extra_bufts.recorded() is None
    extra_bufts.record_crash("SIGILL")  # and a new verdict replaces the broken file
    assert extra_bufts.recorded() is not None


# -- real workers dying by real signals ----------------------------------------------------------


@pytest.mark.models
@pytest.mark.parametrize("signal_name", ["SIGILL", "SIGSEGV"])
def test_auto_loads_again_without_extra_bufts_and_answers(
    smol, monkeypatch, caplog, fresh_notices, signal_name
):
    monkeypatch.setenv(FAULT_ENV, f"{signal_name}:extra-bufts")
    caplog.set_level(logging.WARNING, logger="ondevice")
    request = single_turn(Kind.BASE, False, "One, two, three,", GREEDY)
    with WorkerModel(smol.path, LoadOptions(n_ctx=512)) as worker:
        assert worker.facts.extra_bufts  # loading works; the first batch of 2+ tokens kills it
        first_pid = worker.pid
        finished = worker.generate(request)
        assert finished.stats.generated_tokens > 0 and finished.prompt.n_tokens >= 2
        assert worker.pid != first_pid and not worker.facts.extra_bufts
    verdict = extra_bufts.recorded()
    assert verdict is not None and signal_name in verdict.reason
    assert len(_fallbacks(caplog)) == 1
    # The next load goes straight to the setting that works, without a crash or another notice.
    with WorkerModel(smol.path, LoadOptions(n_ctx=512)) as worker:
        assert not worker.facts.extra_bufts
        first_pid = worker.pid
        assert worker.generate(request).stats.generated_tokens > 0
        assert worker.pid == first_pid
    assert len(_fallbacks(caplog)) == 1


@pytest.mark.models
def test_bench_and_tokenize_requests_are_sent_again_after_the_fallback(smol, monkeypatch, fresh_notices):
    monkeypatch.setenv(FAULT_ENV, "SIGILL:extra-bufts")
    with WorkerModel(smol.path, LoadOptions(n_ctx=512)) as worker:
        timing = worker.bench("pp", 32)
        assert timing.n_tokens == 32 and timing.seconds > 0
        assert not worker.facts.extra_bufts
    assert extra_bufts.recorded() is not None


@pytest.mark.models
def test_explicit_on_is_obeyed_and_the_error_says_what_to_do(smol, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "SIGILL:extra-bufts")
    options = LoadOptions(n_ctx=512, extra_bufts=ExtraBufts.ON)
    expected = r"killed by SIGILL.*--extra-bufts auto or off"
    with WorkerModel(smol.path, options) as worker, pytest.raises(WorkerError, match=expected):
        worker.generate(single_turn(Kind.BASE, False, "One, two, three,", GREEDY))
    assert extra_bufts.recorded() is None


@pytest.mark.models
def test_sigill_without_extra_bufts_means_a_build_for_another_cpu(smol, monkeypatch, caplog):
    monkeypatch.setenv(FAULT_ENV, "SIGILL")
    caplog.set_level(logging.WARNING, logger="ondevice")
    with WorkerModel(smol.path, LoadOptions(n_ctx=512)) as worker, pytest.raises(WorkerError) as caught:
        worker.generate(single_turn(Kind.BASE, False, "One, two, three,", GREEDY))
    message = str(caught.value)
    assert "also with llama.cpp's extra buffer types off" in message
    assert "does not match this CPU" in message and REBUILD in message
    assert extra_bufts.recorded() is None and not _fallbacks(caplog)


@pytest.mark.models
def test_a_crash_that_is_not_the_cpu_kernels_is_not_blamed_on_them(smol, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "SIGSEGV")
    with (
        WorkerModel(smol.path, LoadOptions(n_ctx=512)) as worker,
        pytest.raises(WorkerError, match=r"killed by SIGSEGV.*also with llama.cpp's extra buffer types off"),
    ):
        worker.generate(single_turn(Kind.BASE, False, "One, two, three,", GREEDY))
    assert extra_bufts.recorded() is None


# -- as a user sees it -----------------------------------------------------------------------------


@pytest.mark.models
def test_run_continues_the_text_with_one_line_about_the_fallback(models_home, monkeypatch, fresh_notices):
    monkeypatch.setenv(FAULT_ENV, "SIGILL:extra-bufts")
    state = models_home / "state" / "extra-bufts.json"
    state.unlink(missing_ok=True)
    try:
        result = invoke("run", "bundled:gemma-3-270m", "The capital of France is", "--temp", "0", "-n", "8")
        assert result.exit_code == 0, result.output
        notes = [line for line in result.stderr.splitlines() if "extra CPU buffer types" in line]
        assert len(notes) == 1 and "SIGILL" in notes[0] and "ondevice doctor" in notes[0]
        assert result.stdout.strip()
        doctor = json.loads(invoke("doctor", "--json").stdout)["extra_bufts"]
        assert doctor["effective"] == "off" and "SIGILL" in doctor["why"]
        again = invoke("run", "bundled:gemma-3-270m", "The capital of France is", "--temp", "0", "-n", "8")
        assert again.exit_code == 0 and "extra CPU buffer types" not in again.stderr
        assert again.stdout == result.stdout  # the same greedy continuation
    finally:
        state.unlink(missing_ok=True)


@pytest.mark.models
def test_run_with_a_build_for_another_cpu_is_one_line_with_the_rebuild_command(models_home, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "SIGILL")
    result = invoke(
        "run", "bundled:smollm2-135m-instruct", "hi", "--temp", "0", "-n", "4", "--extra-bufts", "off"
    )
    one_error_line(result, "killed by SIGILL", "does not match this CPU", REBUILD)


def test_the_flag_and_the_profile_key_reach_the_load_options(tmp_path):
    from ondevice.planning.hardware_profiles import load_hardware_profile, resolve_load_options

    profile = load_hardware_profile("cpu-laptop")
    assert resolve_load_options(profile, {}).extra_bufts is ExtraBufts.AUTO
    assert resolve_load_options(profile, {"extra_bufts": "off"}).extra_bufts is ExtraBufts.OFF
    custom = tmp_path / "amx.toml"
    custom.write_text('extra_bufts = "off"\n')
    assert resolve_load_options(load_hardware_profile(str(custom)), {}).extra_bufts is ExtraBufts.OFF
    custom.write_text('extra_bufts = "maybe"\n')
    with pytest.raises(Exception, match="maybe"):
        load_hardware_profile(str(custom))
    bad = invoke("run", "x.gguf", "hi", "--extra-bufts", "maybe")
    assert bad.exit_code == 2 and "maybe" in bad.output


def test_the_cli_process_never_loads_llama_cpp(tmp_path):
    """doctor and a run ask llama.cpp only through children: a crash there cannot take the CLI down."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from ondevice.cli import cli\n"
        "r = CliRunner().invoke(cli, ['doctor', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(cli, ['profiles', 'detect'])\n"
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp was imported'\n"
        "print('ok')\n"
    )
    env = {"ONDEVICE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.models
async def test_compare_answers_in_both_columns_and_shows_the_fallback_once(
    smol, gemma, monkeypatch, fresh_notices
):
    from textual.widgets import Input

    from ondevice.cli.tui_launch import build_app

    monkeypatch.setenv(FAULT_ENV, "SIGILL:extra-bufts")
    app = build_app(
        [gemma, smol], GenerationParams(temperature=0, max_tokens=16), LoadOptions(n_ctx=512), None
    )
    shown: list[str] = []  # recorded when posted: a notice times out after 15 s on a slow machine
    notify = app.notify
    monkeypatch.setattr(
        app, "notify", lambda message, *a, **k: (shown.append(message), notify(message, *a, **k))
    )
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(200):
            await pilot.pause(0.1)
            if all(c.status == "ready" for c in app.compare.columns):
                break
        app.compare.query_one("#prompt", Input).value = "Explain in one sentence why the sky is blue."
        app.compare.query_one("#prompt", Input).focus()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        for column in app.compare.columns:
            assert column.status == "done", column.error
            assert column.answer.text.strip()
            assert not column.backend.facts.extra_bufts
        notices = [message for message in shown if "extra CPU buffer types" in message]
        assert len(notices) == 1 and "SIGILL" in notices[0]
