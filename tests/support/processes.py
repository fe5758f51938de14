"""Process helpers for tests."""

from __future__ import annotations

import subprocess


def dead_pid() -> int:
    """The pid of a process that has exited (for stale lock and partial-file names)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
