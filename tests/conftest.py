"""Shared fixtures: an isolated store for every test, and the bundled models pulled once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ondevice.refs import ResolvedModel, resolve
from ondevice.runtime.engine import WorkerModel
from ondevice.runtime.protocol import LoadOptions
from ondevice.store import Store
from tests.support.imatrix import smol_f16, smol_f16_path, smol_matrix  # noqa: F401 (fixtures)
from tests.support.models import GEMMA, SMOL


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's real store."""
    home = tmp_path / "ondevice-home"
    monkeypatch.setenv("ONDEVICE_HOME", str(home))
    monkeypatch.delenv("ONDEVICE_DEBUG", raising=False)
    return home


@pytest.fixture(scope="session")
def bundled_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding both bundled models, assembled once for the whole run."""
    root = tmp_path_factory.mktemp("bundled-home")
    store = Store(root)
    for ref in (SMOL, GEMMA):
        resolve(ref, store)
    return root


@pytest.fixture
def models_home(bundled_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ONDEVICE_HOME at the shared store with the bundled models."""
    monkeypatch.setenv("ONDEVICE_HOME", str(bundled_home))
    return bundled_home


@pytest.fixture(scope="session")
def smol(bundled_home: Path) -> ResolvedModel:
    return resolve(SMOL, Store(bundled_home))


@pytest.fixture(scope="session")
def gemma(bundled_home: Path) -> ResolvedModel:
    return resolve(GEMMA, Store(bundled_home))


@pytest.fixture(scope="session")
def smol_worker(smol: ResolvedModel) -> Iterator[WorkerModel]:
    with WorkerModel(smol.path, LoadOptions(n_ctx=1024), label=smol.display_name) as worker:
        yield worker  # type: ignore[misc]


@pytest.fixture(scope="session")
def gemma_worker(gemma: ResolvedModel) -> Iterator[WorkerModel]:
    with WorkerModel(gemma.path, LoadOptions(n_ctx=1024), label=gemma.display_name) as worker:
        yield worker  # type: ignore[misc]
