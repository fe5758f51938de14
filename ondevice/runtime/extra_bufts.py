"""Whether llama.cpp's extra CPU buffer types work on this machine, learned from crashes and kept.

On some Intel CPUs with AMX, llama.cpp 0.3.36 routes quantized weights through AMX kernels that die
by SIGILL on the first batch of two or more tokens. Loading with the extra buffer types off avoids it,
at the cost of the repacked and AMX kernels. `auto` keeps them on until a worker dies that way, then
records the verdict for this CPU and this build of llama.cpp, so later loads go straight to off.
`Fallback` is that policy for one model: the options its next worker loads with, after each death.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..errors import WorkerDied, WorkerError
from ..locations import state_dir
from ..planning.hardware import cpu_signature
from . import build
from .protocol import ExtraBufts, LoadOptions

log = logging.getLogger("ondevice.runtime")

COST = "token generation loses llama.cpp's AMX and repacked kernels and can be slower"
# How llama.cpp's extra-buffer CPU kernels die where they break: SIGILL on an instruction the process may
# not run, or a general protection fault (SIGSEGV) on a bad tile configuration.
CPU_FAULTS = ("SIGILL", "SIGSEGV", "SIGBUS")
_announced: set[str] = set()  # builds whose fallback notice this process gave already
_announce_lock = threading.Lock()  # views open several models at once, each from its own thread


@dataclass(frozen=True)
class Verdict:
    """Extra buffer types crashed a worker on this CPU with this build."""

    cpu: str
    build: str
    recorded_at: str  # ISO 8601, UTC
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _path() -> Path:
    return state_dir() / "extra-bufts.json"


def _key(signature: str) -> str:
    return hashlib.sha256(f"{signature}\n{build.build_id()}".encode()).hexdigest()[:24]


def _read_all() -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(_path().read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def recorded() -> Verdict | None:
    """The verdict for this CPU and build, if a crash was recorded."""
    entry = _read_all().get(_key(cpu_signature()))
    with contextlib.suppress(TypeError):
        return Verdict(**entry) if isinstance(entry, dict) else None
    return None


def record_crash(reason: str) -> Verdict:
    """Remember that extra buffer types crash here (a store that cannot be written only warns)."""
    signature = cpu_signature()
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    verdict = Verdict(signature.split(" | ")[1], build.build_id(), now, reason)  # the CPU's model name
    data = _read_all()
    data[_key(signature)] = verdict.as_dict()
    try:
        write_text_atomic(_path(), json.dumps(data, indent=2))
    except OSError as exc:
        log.warning("could not remember the verdict in %s: %s", _path(), exc)
    return verdict


def _effective(setting: ExtraBufts, verdict: Verdict | None) -> ExtraBufts:
    """`auto` is on, or off once a crash was recorded here; on and off are as given."""
    if setting is not ExtraBufts.AUTO:
        return setting
    return ExtraBufts.OFF if verdict else ExtraBufts.ON


def settle(options: LoadOptions) -> LoadOptions:
    """The options a worker loads with: `auto` settled to on or off for this machine."""
    if options.extra_bufts is not ExtraBufts.AUTO:
        return options
    return replace(options, extra_bufts=_effective(options.extra_bufts, recorded()))


def use_extra_bufts(setting: ExtraBufts = ExtraBufts.AUTO) -> bool:
    """Whether a load with `setting` turns them on here: for code that calls llama.cpp itself."""
    return settle(LoadOptions(extra_bufts=setting)).extra_bufts is ExtraBufts.ON


def status(setting: ExtraBufts = ExtraBufts.AUTO) -> dict[str, Any]:
    """For `ondevice doctor`: the setting, what loads get, and why."""
    verdict = recorded()
    on = _effective(setting, verdict) is ExtraBufts.ON
    if setting is not ExtraBufts.AUTO:
        why = f"set to {setting.value} (a profile or --extra-bufts)"
    elif verdict:
        why = f"off since {verdict.recorded_at}: {verdict.reason}; {COST}"
    else:
        why = "on: no crash recorded on this CPU with this build of llama.cpp"
    return {
        "setting": setting.value,
        "effective": "on" if on else "off",
        "why": why,
        "verdict": verdict.as_dict() if verdict else None,
    }


class Fallback:
    """One model's extra buffer types through its workers' deaths.

    When a worker dies by a CPU fault with them on, and the requested setting leaves them to `auto`,
    the next worker loads without them. If the work then goes through, the verdict is kept for this
    machine and build, and the first model in this process to learn it says so once.
    """

    def __init__(self, requested: LoadOptions, label: str) -> None:
        self.requested = requested
        self.options = settle(requested)  # what the next worker loads with
        self.label = label
        self._suspect: str | None = None  # the signal that made us turn extra buffer types off

    def after_death(self, died: WorkerDied) -> None:
        """Turn extra buffer types off if they may be the cause; else raise (with the rebuild command
        where the build itself does not fit this CPU)."""
        name = died.signal_name
        if name not in CPU_FAULTS:
            raise died
        if self.options.extra_bufts is ExtraBufts.OFF:
            also = " (also with llama.cpp's extra buffer types off)" if self._suspect else ""
            self._suspect = None
            if name == "SIGILL":
                raise WorkerError(
                    f"{died}{also}: llama.cpp ran an instruction this CPU lacks, so this build of "
                    f"llama-cpp-python does not match this CPU; rebuild it: {build.REBUILD}"
                ) from None
            raise WorkerDied(f"{died}{also}", died.exitcode) from None
        if self.requested.extra_bufts is ExtraBufts.ON:
            raise WorkerError(
                f"{died}. On some CPUs (Intel Xeons with AMX) llama.cpp's extra buffer types crash this "
                "way: load with --extra-bufts auto or off"
            ) from None
        self._suspect = name
        self.options = replace(self.options, extra_bufts=ExtraBufts.OFF)

    def confirm(self) -> None:
        """The work that crashed went through without extra buffer types: remember it, say it once."""
        if self._suspect is None:
            return
        name, self._suspect = self._suspect, None
        verdict = record_crash(f"a worker died by {name} with them on ({self.label}) and ran without them")
        with _announce_lock:
            first = verdict.build not in _announced
            _announced.add(verdict.build)
        if first:
            log.warning(
                "llama.cpp's extra CPU buffer types crashed on this CPU (%s in its AMX or repacked kernels); "
                "loading without them from now on: %s (see `ondevice doctor`)",
                name,
                COST,
            )
