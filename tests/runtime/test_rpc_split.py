"""A model split over two real RPC servers on loopback (one thread each): the same greedy tokens as a
local run, all layers remote or some; a server killed mid-answer ends that answer in one line, within
a bound, and leaves no process behind; the next run with live servers works."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest

from ondevice.errors import WorkerDied
from ondevice.kinds import Kind
from ondevice.runtime.engine import WorkerModel, single_turn
from ondevice.runtime.protocol import ExtraBufts, GenerationParams, LoadOptions, TokenEvent
from tests.support.rpc import assert_gone, rpc_servers

pytestmark = pytest.mark.models

PROMPT = "The three primary colours are"
GREEDY = GenerationParams(max_tokens=24, temperature=0)
# Both sides run llama.cpp's plain CPU kernels: a server keeps weights in plain buffers, so the local
# run has the repacked/AMX ones off too (what differs is the RPC path, not the kernels).
LOCAL = LoadOptions(n_ctx=512, n_threads=2, extra_bufts=ExtraBufts.OFF)
KILL_BOUND_S = 30  # a dead server must end the answer within this long (it takes well under 1 s here)


def answer(path: str, options: LoadOptions) -> tuple[tuple[int, ...], tuple]:
    with WorkerModel(path, options) as worker:
        finished = worker.generate(single_turn(Kind.BASE, False, PROMPT, GREEDY))
        return finished.token_ids, worker.facts.split


def test_split_over_two_servers_gives_the_local_tokens_all_remote_and_mixed(gemma):
    local, local_split = answer(str(gemma.path), LOCAL)
    assert len(local) == 24 and local_split == ()
    with rpc_servers(2) as servers:
        names = tuple(str(s.config.endpoint) for s in servers)
        remote, split = answer(str(gemma.path), replace(LOCAL, rpc_servers=names, n_gpu_layers=-1))
        assert remote == local
        devices = {share.device: share for share in split}
        assert set(devices) == {"CPU", "RPC0", "RPC1"}
        assert {devices["RPC0"].description, devices["RPC1"].description} == set(names)
        assert devices["RPC0"].model_bytes > 10 << 20 and devices["RPC1"].kv_cache_bytes > 0

        mixed, mixed_split = answer(str(gemma.path), replace(LOCAL, rpc_servers=names, n_gpu_layers=8))
        assert mixed == local
        here = next(s for s in mixed_split if s.device == "CPU")
        assert here.kv_cache_bytes > 0  # layers 0-10 kept their KV cache here


def test_a_mixed_split_survives_the_extra_buffer_type_fallback(gemma):
    # `auto`: on a CPU whose AMX kernels crash, the worker dies on the prompt, reloads without them and
    # registers the servers again; elsewhere it runs with them. Either way the answer comes.
    with rpc_servers(2) as servers:
        names = tuple(str(s.config.endpoint) for s in servers)
        options = replace(LOCAL, rpc_servers=names, n_gpu_layers=8, extra_bufts=ExtraBufts.AUTO)
        tokens, split = answer(str(gemma.path), options)
        assert len(tokens) == 24 and {s.device for s in split} == {"CPU", "RPC0", "RPC1"}


def test_a_server_killed_mid_answer_ends_it_in_one_line_and_the_next_run_works(gemma):
    long = GenerationParams(max_tokens=2000, temperature=0, ignore_eos=True)
    with rpc_servers(2) as servers:
        names = tuple(str(s.config.endpoint) for s in servers)
        worker = WorkerModel(str(gemma.path), replace(LOCAL, n_ctx=2048, rpc_servers=names, n_gpu_layers=-1))
        victim = servers[1]
        seen = 0
        with pytest.raises(WorkerDied) as died:
            for event in worker.stream(single_turn(Kind.BASE, False, PROMPT, long)):
                if isinstance(event, TokenEvent):
                    seen += 1
                    if seen == 5:
                        os.kill(victim.pid, signal.SIGKILL)
                        killed_at = time.monotonic()
        assert time.monotonic() - killed_at < KILL_BOUND_S
        assert 5 <= seen < 2000
        message = str(died.value)
        assert "\n" not in message
        assert f"RPC server {victim.config.endpoint} stopped answering while" in message
        assert "killed by SIGABRT" in message
        worker.close()
        victim.stop()
        assert_gone([worker.pid, victim.pid])
        # the surviving server took the dead worker's hang-up and serves the next client
        with rpc_servers(1) as fresh:
            again = (names[0], str(fresh[0].config.endpoint))
            tokens, _ = answer(str(gemma.path), replace(LOCAL, rpc_servers=again, n_gpu_layers=-1))
            assert len(tokens) == 24


def test_a_manual_tensor_split_puts_every_layer_on_the_second_server(gemma):
    local, _ = answer(str(gemma.path), LOCAL)
    with rpc_servers(2) as servers:
        names = tuple(str(s.config.endpoint) for s in servers)
        options = replace(LOCAL, rpc_servers=names, n_gpu_layers=-1, tensor_split=(0.0, 1.0))
        tokens, split = answer(str(gemma.path), options)
        assert tokens == local
        weights = {share.device: share.model_bytes for share in split}
        assert weights.get("RPC0", 0) == 0 and weights["RPC1"] > 200 << 20  # every layer and the output
