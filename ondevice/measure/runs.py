"""Saved measurement runs: one JSON file per call under the store's runs/ directory.

The one writer and reader of saved runs: everything else gets BenchRun and EvalRun objects.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import locations
from ..atomic import write_text_atomic
from ..errors import StoreError, UnknownReferenceError
from ..records import from_dict
from .results import SCHEMA_VERSION, BenchRun, EvalRun, upgrade

Run = BenchRun | EvalRun
_KINDS: dict[str, type[BenchRun] | type[EvalRun]] = {"bench": BenchRun, "eval": EvalRun}


@dataclass(frozen=True)
class SavedRun:
    """What a history list shows without reading every result."""

    id: str
    kind: str  # "bench" or "eval"
    created: str
    models: tuple[str, ...]
    path: Path


def new_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"


def save_run(run: BenchRun | EvalRun, directory: Path | None = None) -> Path:
    """Write the run as JSON (atomically) and return its path; sets `run.id` when empty."""
    directory = directory or locations.runs_dir()
    if not run.id:
        run.id = new_id(run.kind)
    path = directory / f"{run.id}.json"
    write_text_atomic(path, json.dumps(run.as_dict(), indent=2, ensure_ascii=False) + "\n")
    return path


def load_run(path: Path) -> Run:
    """A saved run, typed; StoreError when the file is not one this version can read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read the saved run {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in _KINDS:
        raise StoreError(f"{path} is not a saved bench or eval run")
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise StoreError(f"{path.name} was written by a newer ondevice (run schema {schema!r})")
    return from_dict(_KINDS[data["kind"]], upgrade(data), path.name)


def run_models(run: Run) -> tuple[str, ...]:
    """The names of the models a run measured, in order, once each."""
    if isinstance(run, BenchRun):
        names = [r.model.name for r in run.results]
    else:
        names = [q.model.name for q in run.quality] + [f.model.name for f in run.follow]
        names += [r.model.name for r in run.speed]
    return tuple(dict.fromkeys(names))


def load_runs(directory: Path | None = None, kind: str | None = None) -> list[tuple[Path, Run]]:
    """Every readable saved run (of `kind`, if given), newest first; unreadable files are skipped."""
    directory = directory or locations.runs_dir()
    found = []
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            run = load_run(path)
        except StoreError:
            continue
        if kind is None or run.kind == kind:
            found.append((path, run))
    return sorted(found, key=lambda pr: (pr[1].created, pr[1].id), reverse=True)


def list_runs(directory: Path | None = None) -> list[SavedRun]:
    """Saved runs for a history list, newest first (a list with unreadable files must still open)."""
    return [
        SavedRun(run.id or path.stem, run.kind, run.created, run_models(run), path)
        for path, run in load_runs(directory)
    ]


def find_run(run_id: str, directory: Path | None = None) -> Run:
    """The saved run with this id (or the only one whose id starts with it); a clear error otherwise."""
    saved = list_runs(directory)
    matches = [r for r in saved if r.id == run_id] or [r for r in saved if r.id.startswith(run_id)]
    if len(matches) == 1:
        return load_run(matches[0].path)
    if not saved:
        raise UnknownReferenceError("no saved runs yet: `ondevice bench` and `ondevice eval` keep one each")
    shown = ", ".join(r.id for r in (matches or saved)[:5])
    if matches:
        raise UnknownReferenceError(f"{run_id!r} matches several runs: {shown}")
    raise UnknownReferenceError(f"no saved run {run_id!r}; the newest: {shown} (`ondevice runs list`)")
