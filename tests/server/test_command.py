"""`ondevice serve` as a user runs it: a process that serves until SIGTERM or Ctrl-C, then exits 0
and leaves no worker behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ondevice.server.serving import listen
from tests.support.cli import invoke, one_error_line
from tests.support.models import SMOL
from tests.support.serving import sse_events

SERVING = re.compile(r"serving on (http://\S+)/v1")


def start(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "ondevice", "serve", *args, "--port", "0"]
    environ = {**os.environ, "ONDEVICE_HOME": str(home), **(env or {})}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environ)
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        match = SERVING.search(line)
        if match:
            return process, match.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("the server did not start:\n" + "".join(seen))


@pytest.fixture
def stop_leftovers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.models
def test_sigterm_stops_the_server_and_every_worker_and_exits_0(models_home, stop_leftovers):
    process, url = start(
        models_home, SMOL, "--ctx", "512", "--extra-bufts", "off", env={"ONDEVICE_API_KEY": "sesame"}
    )
    stop_leftovers.append(process)
    body = {"model": SMOL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code == 401
    key = {"Authorization": "Bearer sesame"}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=key, timeout=60)
    assert reply.status_code == 200, reply.text
    workers = psutil.Process(process.pid).children(recursive=True)
    (loaded,) = httpx.get(f"{url}/ondevice/status", headers=key).json()["models"]
    assert loaded["pid"] in {w.pid for w in workers}
    # The model runs in the worker: llama.cpp's libraries are mapped there, never in the server.
    mapped = {Path(m.path).name for m in psutil.Process(process.pid).memory_maps()}
    assert not any(name.startswith(("libllama", "libggml")) for name in mapped), mapped
    assert any(
        m.path.endswith(".so") and "libllama" in m.path for m in psutil.Process(loaded["pid"]).memory_maps()
    )
    # SIGTERM mid-stream: that stream ends cleanly (a finish reason, then [DONE]), then the server.
    long = {**body, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=long, headers=key, timeout=60) as r:
        events = sse_events(r.iter_lines())
        next(e for e in events if isinstance(e, dict) and e["choices"][0]["delta"].get("content"))
        process.send_signal(signal.SIGTERM)
        rest = list(events)
    assert rest[-1] == "[DONE]" and rest[-2]["choices"][0]["finish_reason"] == "cancelled"
    assert process.wait(30) == 0
    assert "stopped" in process.stderr.read()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []


def test_ctrl_c_stops_an_idle_server_with_exit_0(models_home, stop_leftovers):
    process, url = start(models_home, "--keep-alive", "30s")
    stop_leftovers.append(process)
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0


def test_a_port_in_use_or_a_bad_keep_alive_is_one_error_line():
    with listen("127.0.0.1", 0) as taken:
        port = str(taken.getsockname()[1])
        one_error_line(invoke("serve", "--port", port), "cannot listen on 127.0.0.1:" + port)
    one_error_line(invoke("serve", "--keep-alive", "soon"), "not a duration")
    one_error_line(invoke("serve", "bundled:nothing-like-it"), "nothing-like-it")
