"""Process helpers for tests."""

from __future__ import annotations

import signal
import subprocess


def dead_pid() -> int:
    """The pid of a process that has exited (for stale lock and partial-file names)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def default_sigint() -> None:
    """A Popen preexec_fn: the child takes SIGINT as a terminal's Ctrl-C, even when these tests run in
    the background of a non-interactive shell, which starts them with SIGINT ignored (and a child
    would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
