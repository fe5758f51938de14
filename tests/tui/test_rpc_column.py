"""The compare view with one model over RPC servers: a server killed mid-answer ends that column's
answer with one line; the app and the other column (a local model) live on."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ondevice.live import ModelSpec
from ondevice.runtime.protocol import ExtraBufts, GenerationParams, LoadOptions
from ondevice.tui.app import OndeviceApp
from tests.support.rpc import rpc_servers

pytestmark = pytest.mark.models
SIZE = (120, 36)


async def test_a_server_killed_mid_answer_errors_its_column_only(gemma, smol):
    local = LoadOptions(n_ctx=1024, n_threads=1, extra_bufts=ExtraBufts.OFF)
    with rpc_servers(2) as servers:
        remote = LoadOptions(
            n_ctx=1024,
            n_threads=1,
            extra_bufts=ExtraBufts.OFF,
            n_gpu_layers=-1,
            rpc_servers=tuple(str(s.config.endpoint) for s in servers),
        )
        app = OndeviceApp(
            [ModelSpec.from_resolved(gemma, remote), ModelSpec.from_resolved(smol, local)],
            defaults=GenerationParams(temperature=0, max_tokens=300, ignore_eos=True),
        )
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(600):
                await pilot.pause(0.1)
                if all(c.status == "ready" for c in app.compare.columns):
                    break
            split, plain = app.compare.columns
            victim = servers[0]

            def kill_when_streaming() -> None:
                deadline = time.monotonic() + 120
                while split.live.tokens < 3 and time.monotonic() < deadline:
                    time.sleep(0.02)
                os.kill(victim.pid, signal.SIGKILL)

            killer = threading.Thread(target=kill_when_streaming, daemon=True)
            killer.start()
            app.compare.query_one("#prompt").value = "Once upon a time"
            app.compare.query_one("#prompt").focus()
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause(0.1)
            killer.join(timeout=5)
            assert split.status == "error"
            assert f"RPC server {victim.config.endpoint} stopped answering" in split.error
            assert "\n" not in split.error and split.live.tokens >= 3
            assert plain.status == "done" and plain.live.tokens == 300
