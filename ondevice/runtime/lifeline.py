"""Child processes die with their parent: a killed CLI or UI never leaves a model worker or a
quantizer running on its own."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import tempfile
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path

from ..atomic import pid_alive

PARENT_GONE_EXIT = 70  # what a child exits with when it finds its parent gone


def exit_with_parent() -> None:
    """In a spawned child: end this process as soon as the parent process ends, however it ends.

    A thread waits on the parent's sentinel (a pipe the parent holds open until it exits), so this
    works while the main thread is busy inside llama.cpp, and after SIGKILL of the parent too.
    """
    parent = mp.parent_process()
    if parent is None:
        return

    def wait() -> None:
        parent.join()
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=wait, name="exit-with-parent", daemon=True).start()


def log_file(kind: str) -> Path:
    """A new log file for a child of this process, in the temp folder. Its name carries our pid, so
    the logs of processes killed before they could clean up are swept here, by the next one."""
    sweep_logs()
    fd, name = tempfile.mkstemp(prefix=f"ondevice-{kind}-{os.getpid()}-", suffix=".log")
    os.close(fd)
    return Path(name)


def log_lines(path: str | Path) -> list[str]:
    """A child's log, line by line, stripped, blank lines left out; [] when it cannot be read."""
    with contextlib.suppress(OSError):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        return [line.strip() for line in text.splitlines() if line.strip()]
    return []


def stop_child(process: BaseProcess, grace: float = 5.0) -> None:
    """End a child: SIGTERM, then SIGKILL when it has not ended within `grace` seconds."""
    if process.is_alive():
        process.terminate()
        process.join(grace)
    if process.is_alive():
        process.kill()
        process.join(grace)


def sweep_logs() -> list[Path]:
    """Delete child logs whose owning process no longer runs."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob("ondevice-*-*-*.log"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
