"""`ondevice rpc-server`, and `doctor` on RPC: what a user sees, with real servers on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil

from ondevice.runtime.rpc_client import check_server, parse_endpoint
from tests.support.cli import invoke, one_error_line
from tests.support.processes import default_sigint
from tests.support.readme import json_fields
from tests.support.rpc import assert_gone, free_port, rpc_servers


def test_doctor_says_this_build_has_rpc(isolated_home):
    # CI installs llama-cpp-python with -DGGML_RPC=on, as the README's commands do
    data = json.loads(invoke("doctor", "--json").stdout)
    assert data["rpc"] == {"supported": True, "rebuild": None}
    assert "RPC" in invoke("doctor").stdout


def test_rpc_server_refuses_a_network_address_unless_told():
    one_error_line(invoke("rpc-server", "--host", "0.0.0.0"), "--allow-network", "no authentication")
    one_error_line(invoke("rpc-server", "--mem", "lots"), "--mem", "not a size")


def test_rpc_server_prints_its_status_line_serves_and_ends_cleanly_on_ctrl_c(isolated_home):
    port = free_port()
    command = [sys.executable, "-m", "ondevice", "rpc-server", "--port", str(port), "-t", "1", "--mem", "1G"]
    proc = subprocess.Popen(
        [*command, "--json"],
        env={**os.environ, "ONDEVICE_HOME": str(isolated_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        status = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert status["endpoint"] == f"127.0.0.1:{port}" and status["threads"] == 1
        assert status["memory_bytes"] == 10**9 and 0 < status["free_bytes"] <= 10**9
        assert status["backend"] == "CPU" and status["protocol"] == "7.0.0"
        assert sorted(status) == sorted(json_fields("rpc-server"))  # the README lists exactly these
        child = status["pid"]
        assert child in [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        served = check_server(parse_endpoint(status["endpoint"]))
        assert served.total_bytes == (10**9,)  # clients see the memory offered, not the machine's
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read() == ""  # type: ignore[union-attr]  # one line, nothing after it
        assert_gone([child])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rpc_server_on_a_taken_port_is_one_line():
    with rpc_servers(1) as (taken,):
        port = str(taken.config.port)
        one_error_line(invoke("rpc-server", "--port", port), f"cannot listen on 127.0.0.1:{port}", "in use")
