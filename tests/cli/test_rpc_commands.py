"""`--rpc` on the commands: what a user sees, with real RPC servers and fake ones on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from tests.support.cli import invoke, one_error_line
from tests.support.models import GEMMA, SMOL
from tests.support.rpc import Misbehaviour, assert_gone, endpoints, fake_server, free_port, rpc_servers

KILL_BOUND_S = 30  # a dead server ends the command within this long (well under a second here)


@pytest.mark.models
def test_every_wrong_endpoint_is_one_line_before_loading(models_home):
    args = ["run", SMOL, "Hi", "-n", "4"]
    port = free_port()
    one_error_line(invoke(*args, "--rpc", f"127.0.0.1:{port}"), f"nothing listens at 127.0.0.1:{port}")
    with fake_server(Misbehaviour.HTTP) as http:
        one_error_line(invoke(*args, "--rpc", f"127.0.0.1:{http}"), "is not an RPC server")
    with fake_server(Misbehaviour.WRONG_VERSION) as old:
        one_error_line(invoke(*args, "--rpc", f"127.0.0.1:{old}"), "speaks protocol v6.0.0")
    one_error_line(invoke(*args, "--rpc", "127.0.0.1"), "HOST:PORT")
    one_error_line(invoke(*args, "--tensor-split", "1,x"), "not a list of numbers")


@pytest.mark.models
def test_run_over_two_servers_prints_the_local_text_and_shows_the_split(models_home):
    args = ["run", GEMMA, "The sky is blue because", "--temperature", "0", "-n", "16", "--extra-bufts", "off"]
    local = invoke(*args, "--json")
    assert local.exit_code == 0, local.output
    with rpc_servers(2) as servers:
        split = invoke(*args, "--rpc", endpoints(servers), "--json")
        assert split.exit_code == 0, split.output
        ours, theirs = json.loads(local.stdout), json.loads(split.stdout)
        assert theirs["text"] == ours["text"] and ours["split"] == []
        assert [d["device"] for d in theirs["split"]] == ["CPU", "RPC0", "RPC1"]
        plan = [line for line in split.stderr.splitlines() if "layers" in line]
        assert any("RPC0 (127.0.0.1:" in line and "available" in line for line in plan), split.stderr

        shown = invoke(*args, "--rpc", endpoints(servers))
        assert shown.exit_code == 0 and shown.stdout.strip() == ours["text"].strip()
        assert "on RPC1 (127.0.0.1:" in shown.stderr

        bench = invoke(
            "bench", SMOL, "-p", "16", "-n", "4", "-r", "1", "--no-save", "--rpc", endpoints(servers)
        )
        assert bench.exit_code == 0, bench.output
        assert "CPU,RPC" in bench.stdout and "| RPC1 " in bench.stdout

        # --plain runs one model after the other, so both can use the servers in turn
        both = invoke(
            "compare", "--plain", GEMMA, SMOL, "--prompt", "Hi", "-n", "4", "--rpc", endpoints(servers)
        )
        assert both.exit_code == 0, both.output
        assert sum("RPC1 (127.0.0.1:" in line for line in both.stderr.splitlines()) == 2


@pytest.mark.parametrize("command", ["run", "chat", "compare", "bench", "eval", "serve"])
def test_every_loading_command_takes_rpc_and_a_tensor_split(command):
    shown = invoke(command, "--help").stdout
    assert "--rpc HOST:PORT[,...]" in shown and "--tensor-split" in shown


@pytest.mark.models
def test_models_info_plans_the_split_without_loading(models_home):
    with rpc_servers(2, memory="2G") as servers:
        info = invoke("models", "info", GEMMA, "--rpc", endpoints(servers), "--json")
        assert info.exit_code == 0, info.output
        split = json.loads(info.stdout)["rpc_split"]
        assert [d["device"] for d in split["devices"]] == ["CPU", "RPC0", "RPC1"]
        assert [d["available_bytes"] for d in split["devices"][1:]] == [2 * 10**9] * 2  # what --mem offers
        assert split["fits"] and sum(d["layers"] for d in split["devices"]) == 18
        shown = invoke("models", "info", GEMMA, "--rpc", endpoints(servers))
        assert "RPC1 (127.0.0.1:" in shown.stdout and "+ output" in shown.stdout


@pytest.mark.models
def test_a_server_killed_while_run_streams_ends_it_with_one_error_line(models_home):
    with rpc_servers(2) as servers:
        args = ["run", GEMMA, "Once upon a time", "--temperature", "0", "-n", "3000", "--ignore-eos"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "ondevice", *args, "--rpc", endpoints(servers)],
            env={**os.environ, "ONDEVICE_HOME": str(models_home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stdout.read(20)  # the answer is streaming
            children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
            os.kill(servers[0].pid, signal.SIGKILL)
            code = proc.wait(timeout=KILL_BOUND_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 1
        stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and f"RPC server {servers[0].config.endpoint} stopped answering" in errors[0]
        assert_gone(children)
