"""The real app in a real terminal: tmux starts `ondevice compare`, we type, read the screen, quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.models import SMOL

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def wait_for(session: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


def test_compare_in_a_real_terminal(models_home, tmp_path):
    exe = shutil.which("ondevice", path=os.path.dirname(sys.executable))
    session = f"ondevice-{uuid.uuid4().hex[:8]}"
    done_file = tmp_path / "exit-code"
    command = (
        f"ONDEVICE_HOME={models_home} {exe} compare {SMOL} --ctx 512 --temp 0 -n 16; echo $? > {done_file}"
    )
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        wait_for(session, "· ready")
        tmux("send-keys", "-t", session, "What is the capital of France?", "Enter")
        screen = wait_for(session, "· done")
        assert "[instruct] Q4_1" in screen and "tok/s" in screen
        tmux("send-keys", "-t", session, "C-q")
        for _ in range(100):
            if done_file.exists():
                break
            time.sleep(0.1)
        assert done_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
