"""Test-only fault injection in the model worker: a real CPU fault where llama.cpp's kernels die.

"SIGILL:extra-bufts" in ONDEVICE_TEST_FAULT makes a worker kill itself with a real SIGILL on its first
batch of two or more tokens while extra buffer types are on (as llama.cpp's AMX kernels die on some
CPUs; SIGSEGV works too); "SIGILL" does it with them off too (as a build for another CPU does).
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "ONDEVICE_TEST_FAULT"


def injected_fault(extra_bufts: bool) -> signal.Signals | None:
    """The signal the worker should die by on a multi-token batch, if a test asked for one."""
    name, _, condition = os.environ.get(FAULT_ENV, "").partition(":")
    if name not in ("SIGILL", "SIGSEGV") or (condition == "extra-bufts" and not extra_bufts):
        return None
    return signal.Signals[name]
