"""The one module that knows where ondevice keeps things."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

HOME_ENV = "ONDEVICE_HOME"


def home() -> Path:
    """The store root: $ONDEVICE_HOME, else $XDG_DATA_HOME/ondevice, else ~/.local/share/ondevice."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "ondevice"


def models_dir() -> Path:
    """One sub-directory per model name, holding GGUF files and their manifests."""
    return home() / "models"


def runs_dir() -> Path:
    """Saved benchmark and evaluation runs."""
    return home() / "runs"


def state_dir() -> Path:
    """What ondevice learned about this machine and its llama.cpp build (build facts, crash verdicts)."""
    return home() / "state"


def transcripts_dir() -> Path:
    """Chat transcripts saved from the terminal UI."""
    return home() / "transcripts"


def profiles_dir() -> Path:
    """Shipped profiles: inside the installed package, or the checkout's profiles/ in development."""
    installed = resources.files("ondevice") / "profiles"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "profiles"


def user_profiles_dir() -> Path:
    """The user's profiles (hardware/*.toml, models/*.toml): same-named ones replace the shipped ones."""
    return home() / "profiles"
