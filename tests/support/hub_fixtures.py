"""Fixtures for tests against the local Hub server: a temp HF_HOME, the server on HF_ENDPOINT, offline mode.

huggingface_hub reads its variables once, at import, so its constants are re-pointed as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub_server import FakeHub


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp HF_HOME, also in huggingface_hub's constants (it reads the variables once, at import)."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    old_home = constants.HF_HOME
    for name in dir(constants):
        value = getattr(constants, name)
        if name.isupper() and isinstance(value, str) and value.startswith(old_home):
            monkeypatch.setattr(constants, name, str(home) + value[len(old_home) :])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(home))
    for var in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def hub(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    yield server
    server.stop()


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
