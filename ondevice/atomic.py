"""Write files so that the final path only ever holds a complete file.

Every writer goes to a partial file in the target directory, fsyncs it and renames it into place.
Partial names carry the writer's pid, so a later run can tell a dead writer's leftovers from a live one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreError
from .units import format_bytes

PARTIAL_SUFFIX = ".partial"


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete partial files left by writers that no longer run; return what was removed."""
    removed = []
    if not directory.is_dir():
        return removed
    for candidate in directory.glob(f".*{PARTIAL_SUFFIX}"):
        pid_text = candidate.name[: -len(PARTIAL_SUFFIX)].rsplit(".", 1)[-1]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse with the numbers when `directory` lacks `needed` bytes."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise StoreError(f"{what} needs {format_bytes(needed)}, {format_bytes(free)} free in {probe}")


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a partial path to write; on success fsync and rename it to `final`, else delete it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(final)
    partial.unlink(missing_ok=True)
    try:
        yield partial
        if not partial.exists():
            raise StoreError(f"nothing was written for {final}")
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, final)
        fsync_dir(final.parent)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(final: Path, text: str) -> None:
    with atomic_path(final) as partial:
        partial.write_text(text, encoding="utf-8")
