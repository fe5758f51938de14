"""Saved measurement runs: one JSON file per call under the store's runs/ directory."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import locations
from ..atomic import write_text_atomic
from ..errors import StoreError
from .results import BenchRun, EvalRun


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


def load_run(path: Path) -> dict[str, Any]:
    """A saved run as the dictionary it was written from."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read the saved run {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in ("bench", "eval"):
        raise StoreError(f"{path} is not a saved bench or eval run")
    return data


def list_runs(directory: Path | None = None) -> list[SavedRun]:
    """Saved runs, newest first; unreadable files are skipped (a history list must still open)."""
    directory = directory or locations.runs_dir()
    found = []
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            data = load_run(path)
        except StoreError:
            continue
        names = [r["model"]["name"] for r in data.get("results", [])]
        names += [q["model"]["name"] for q in data.get("quality", [])]
        names += [f["model"]["name"] for f in data.get("follow", [])]
        found.append(
            SavedRun(
                id=data.get("id", path.stem),
                kind=data["kind"],
                created=data.get("created", ""),
                models=tuple(dict.fromkeys(names)),
                path=path,
            )
        )
    return sorted(found, key=lambda r: (r.created, r.id), reverse=True)
