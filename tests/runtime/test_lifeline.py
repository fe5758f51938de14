"""Nothing hangs and nothing is left behind: children die with their parent, templates have a budget,
a killed run's leftovers are swept, and bad numbers or bytes from the user are one clear line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from ondevice import prompting
from ondevice.errors import PromptError
from ondevice.prompting import Message, render_chat_template
from ondevice.runtime import lifeline
from tests.support.cli import invoke, one_error_line
from tests.support.gguf_samples import header_layout, put_u32, write_tiny_gguf
from tests.support.models import SMOL


def ondevice(*args: str, home: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "ONDEVICE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ondevice", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def children_when(proc: subprocess.Popen, name_part: str, timeout: float = 60) -> list[psutil.Process]:
    """Wait until `proc` has a child whose command line contains `name_part`; return those children."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            c for c in psutil.Process(proc.pid).children(recursive=True) if name_part in " ".join(c.cmdline())
        ]
        if found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {name_part!r} child appeared")


def gone(processes: list[psutil.Process], timeout: float = 10) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


# -- 3. a template cannot hang a run -----------------------------------------------------------------


def test_a_template_that_loops_forever_is_stopped_by_its_time_budget(monkeypatch):
    monkeypatch.setattr(prompting, "RENDER_SECONDS", 0.5)
    nested = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(PromptError, match=r"stopped: it ran for over 0\.5 s"):
        render_chat_template(nested, [Message("user", "hi")])
    assert time.monotonic() - started < 3


def test_a_template_that_builds_gigabytes_is_stopped_before_it_allocates():
    for template, reason in [
        ("{{ 'x' * 1000000000 }}", "builds a sequence"),
        ("{% for i in range(99999) %}{% for j in range(9999) %}0123456789{% endfor %}{% endfor %}", "output"),
        ("{{ 2 ** 100000000 }}", "power"),
    ]:
        with pytest.raises(PromptError, match=reason):
            render_chat_template(template, [Message("user", "hi")])
    ok = "{% for m in messages %}<{{ m.role }}>{{ m.content * 2 }}{% endfor %}"
    assert render_chat_template(ok, [Message("user", "hi")]) == "<user>hihi"


# -- 3, 4, 17. children die with their parent; their logs are swept -----------------------------------


@pytest.mark.models
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killing_run_ends_its_worker(models_home, sig):
    proc = ondevice("run", SMOL, "Count to ten thousand:", "-n", "100000", "--ignore-eos", home=models_home)
    try:
        workers = children_when(proc, "multiprocessing.spawn")
        time.sleep(1.5)  # it is generating now
        proc.send_signal(sig)
        proc.wait(timeout=20)
        assert gone(workers), "the model worker outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert b"Traceback" not in proc.stderr.read()
    # A log left by a killed run is swept by the next one.
    left = list(Path(tempfile.gettempdir()).glob(f"ondevice-worker-{proc.pid}-*.log"))
    lifeline.sweep_logs()
    assert not any(p.exists() for p in left)


@pytest.mark.models
def test_sigkill_of_quantize_ends_the_quantizer_too(smol, isolated_home):
    source = invoke("convert", SMOL, "--outtype", "f32", "--name", "big", "--json")
    assert source.exit_code == 0, source.output
    proc = ondevice("quantize", "big:F32", "--levels", "q4_k_m", "--threads", "1", home=isolated_home)
    try:
        quantizers = children_when(proc, "multiprocessing.spawn")
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone, as `kill -9 PID` does
        proc.wait(timeout=10)
        assert gone(quantizers), "the quantizer kept writing after its parent died"
    finally:
        if proc.poll() is None:
            proc.kill()
    model_dir = isolated_home / "models" / "big"
    assert not (model_dir / "Q4_K_M.gguf").exists()
    again = invoke("quantize", "big:F32", "--levels", "q4_k_m", "--json")
    assert again.exit_code == 0, again.output
    assert not list(model_dir.glob(".*.partial"))
    assert not list(Path(tempfile.gettempdir()).glob(f"ondevice-quantize-{proc.pid}-*.log"))


# -- 9, 14. llama.cpp's failures: its reason, and nothing but our line on stdout -----------------------


@pytest.mark.models
def test_a_model_llama_cpp_refuses_prints_one_line_and_nothing_on_stdout(smol, tmp_path):
    broken = tmp_path / "broken.gguf"
    shutil.copyfile(smol.path, broken)
    at = header_layout(broken).value_at["llama.block_count"]
    broken.write_bytes(put_u32(broken.read_bytes(), at, 1000))
    result = invoke("run", str(broken), "hi", "--json")
    line = one_error_line(result)
    assert "llama.cpp" in line and result.stdout == ""
    assert "gdb" not in result.output and "#0" not in result.output


# -- 10, 11. numbers and bytes at the edge ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--temperature", "nan"],
        ["--top-p", "nan"],
        ["--temperature", "inf"],
        ["--ctx", "4294967296"],
        ["--threads", "1000000"],
        ["--batch", "4294967312"],
        ["-n", "99999999999"],
    ],
)
def test_out_of_range_numbers_are_refused_at_the_edge(args):
    result = invoke("run", "x.gguf", "hi", *args)
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_a_profile_number_beyond_what_llama_cpp_holds_is_refused(isolated_home):
    user = isolated_home / "profiles" / "hardware"
    user.mkdir(parents=True)
    (user / "wrap.toml").write_text("threads = 4294967298\n")
    one_error_line(invoke("run", "x.gguf", "hi", "--profile", "wrap"), "threads", "maximum")


@pytest.mark.models
def test_a_prompt_with_bytes_that_are_not_utf8_is_answered_with_a_note(models_home):
    env = {**os.environ, "ONDEVICE_HOME": str(models_home)}
    done = subprocess.run(
        [sys.executable, "-m", "ondevice", "run", SMOL, b"caf\xe9 \xff?", "--temp", "0", "-n", "4", "--json"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"not UTF-8" in done.stderr
    assert "caf\ufffd" in json.loads(done.stdout)["prompt_text"]


@pytest.mark.models
def test_chat_survives_a_line_that_is_not_utf8_and_an_error_turn(models_home):
    env = {**os.environ, "ONDEVICE_HOME": str(models_home)}
    lines = b"caf\xe9?\n" + ("word " * 2000).encode() + b"\nhi\n/exit\n"
    done = subprocess.run(
        [sys.executable, "-m", "ondevice", "chat", SMOL, "--ctx", "256", "--temp", "0", "-n", "4"],
        env=env,
        input=lines,
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"not UTF-8" in done.stderr and b"context" in done.stderr
    assert done.stdout.count(b"you> ") >= 3


# -- 15, 16, 17, 18. the user's own environment, names, leftovers and one failing model -----------------


def test_a_home_that_cannot_be_written_is_the_users_problem_not_an_internal_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    monkeypatch.setenv("ONDEVICE_HOME", str(blocker / "home"))
    line = one_error_line(invoke("models", "pull", "bundled:smollm2-135m-instruct"), "Not a directory")
    assert "internal error" not in line


def test_escape_codes_in_a_file_name_are_shown_not_sent(tmp_path):
    name = tmp_path / "x\x1b]0;PWN\x07\x1b[2J.gguf"
    write_tiny_gguf(name)
    result = invoke("run", str(name), "hi")
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "␛]0;PWN␇" in result.output


def test_leftovers_of_a_killed_writer_are_swept_and_removable(isolated_home):
    from ondevice.store import Store
    from tests.support.processes import dead_pid

    directory = isolated_home / "models" / "killed"
    directory.mkdir(parents=True)
    leftover = directory / f".F16.gguf.{dead_pid()}.partial"
    leftover.write_bytes(b"GGUF" + bytes(4096))
    removed = invoke("models", "rm", "killed")
    assert removed.exit_code == 0, removed.output
    assert not directory.exists()
    directory.mkdir()
    leftover.write_bytes(b"GGUF")
    assert invoke("models", "list").exit_code == 0 and not directory.exists()
    assert Store(isolated_home).broken() == []


@pytest.mark.models
def test_compare_plain_keeps_every_answer_when_one_model_crashes(models_home, smol, tmp_path):
    broken = tmp_path / "broken.gguf"
    shutil.copyfile(smol.path, broken)
    at = header_layout(broken).value_at["llama.block_count"]
    broken.write_bytes(put_u32(broken.read_bytes(), at, 1000))
    result = invoke(
        "compare", "--plain", SMOL, str(broken), "-p", "What is 2 + 2?", "--temp", "0", "-n", "8", "--json"
    )
    assert result.exit_code == 1
    answers = json.loads(result.stdout)
    assert answers[0]["text"].strip() and "error" not in answers[0]
    assert "SIGABRT" in answers[1]["error"] and "GGML_ASSERT" in answers[1]["error"]
    one_error_line(result, "1 of 2 models failed", "broken.gguf")


@pytest.mark.models
@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("llama.embedding_length", 500, "invalid n_rot"),
        ("llama.attention.head_count", 0, "has wrong shape"),
    ],
)
def test_a_load_failure_quotes_llama_cpps_reason(smol, tmp_path, key, value, reason):
    bad = tmp_path / "bad.gguf"
    shutil.copyfile(smol.path, bad)
    bad.write_bytes(put_u32(bad.read_bytes(), header_layout(bad).value_at[key], value))
    one_error_line(invoke("run", str(bad), "hi"), "llama.cpp could not load", reason)


# -- 2. the worker's own memory limit, sized from the pre-flight ---------------------------------------


@pytest.mark.models
def test_workers_get_a_data_limit_from_the_preflight_and_hitting_it_is_one_clean_error(smol):
    from ondevice.errors import WorkerError
    from ondevice.planning.plan import plan_load
    from ondevice.planning.preflight import estimate_for_model, worker_memory_limit
    from ondevice.runtime.engine import WorkerModel
    from ondevice.runtime.protocol import LoadOptions

    plan = plan_load({"n_ctx": 1024})
    options = plan.options_for(smol)
    assert options.memory_limit_bytes == worker_memory_limit(estimate_for_model(smol.summary, plan.options))
    forced = plan_load({"n_ctx": 1024}, force=True).options_for(smol)
    assert forced.memory_limit_bytes is None
    with WorkerModel(smol.path, options) as worker:
        limits = Path(f"/proc/{worker.pid}/limits").read_text()
        line = next(row for row in limits.splitlines() if row.startswith("Max data size"))
        assert str(options.memory_limit_bytes) in line
    tight = LoadOptions(n_ctx=1024, use_mmap=False, memory_limit_bytes=150 << 20)
    with pytest.raises(WorkerError, match=r"unable to allocate.*--force loads without that limit"):
        WorkerModel(smol.path, tight)
