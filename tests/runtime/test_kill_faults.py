"""SIGKILL at random points of convert, quantize and pull: afterwards no process of theirs is left, no
partial file is visible or stuck, the store lists cleanly, and the next run succeeds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ondevice.store import Store
from tests.support.cli import invoke

ROUNDS = 10
COMMANDS = {
    "convert": ["convert", "bundled:smollm2-135m-instruct", "--outtype", "f16", "--name", "victim"],
    "quantize": ["quantize", "seed:F16", "--levels", "q8_0", "--name", "victim"],
    "pull": ["models", "pull", "bundled:gemma-3-270m"],
}


def timed_run(args: list[str], home: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ondevice", *args],
        env={**os.environ, "ONDEVICE_HOME": str(home)},
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return time.monotonic() - started


def kill_at(args: list[str], home: Path, delay: float) -> list[psutil.Process]:
    """Start the command, SIGKILL it (the parent alone, as `kill -9 PID` does) after `delay` seconds;
    return every process it had started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ondevice", *args],
        env={**os.environ, "ONDEVICE_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + delay
    children: dict[int, psutil.Process] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                children.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return list(children.values())


@pytest.mark.models
@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigkill_at_random_points_leaves_nothing_behind(command, smol, isolated_home):
    home = isolated_home
    if command == "quantize":
        assert (
            invoke("convert", "bundled:smollm2-135m-instruct", "--outtype", "f16", "--name", "seed").exit_code
            == 0
        )
    args = COMMANDS[command]
    rng = random.Random(f"{command}-faults")
    whole = timed_run(args, home)  # how long the command takes here, to spread the kills over
    invoke("models", "rm", "victim" if command != "pull" else "gemma-3-270m")
    for _ in range(ROUNDS):
        started = kill_at(args, home, rng.uniform(0.05, whole))
        _, alive = psutil.wait_procs(started, timeout=10)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "a child outlived the kill"
        listed = invoke("models", "list", "--json")
        assert listed.exit_code == 0, listed.output
        if command == "pull" and Store(home).entries():
            invoke("models", "rm", "gemma-3-270m")  # it finished before the kill: start from nothing again
    store = Store(home)
    store.sweep()
    assert not list(home.glob("models/*/.*.partial")), "a killed writer's partial file was not swept"
    for broken in store.broken():  # a kill between manifest and rename: visible, and removable
        assert invoke("models", "rm", broken.ref).exit_code == 0
    timed_run(args, home)  # the next run succeeds
    verified = invoke("models", "verify")
    assert verified.exit_code == 0, verified.output
    assert store.broken() == []
