"""The parent's RPC check: every way an endpoint can be wrong is one line, before llama.cpp sees it."""

from __future__ import annotations

import pytest

from ondevice.runtime.rpc_client import RpcError, check_server, parse_endpoint, parse_endpoints
from tests.support.rpc import Misbehaviour, fake_server, free_port


def test_endpoints_are_host_port_lists():
    assert [str(e) for e in parse_endpoints("127.0.0.1:50052, box.local:7")] == [
        "127.0.0.1:50052",
        "box.local:7",
    ]
    for bad, fragment in [
        ("127.0.0.1", "HOST:PORT"),
        ("127.0.0.1:0", "1 .. 65535"),
        ("127.0.0.1:http", "HOST:PORT"),
        ("::1:50052", "not IPv6"),
        ("a:1,a:1", "named twice"),
        (",", "no RPC endpoint"),
    ]:
        with pytest.raises(RpcError, match=fragment):
            parse_endpoints(bad)
    assert parse_endpoint("127.0.0.2:9").loopback and not parse_endpoint("10.0.0.2:9").loopback


def test_a_port_where_nothing_listens_is_one_line():
    port = free_port()
    with pytest.raises(
        RpcError, match=rf"nothing listens at 127\.0\.0\.1:{port}: start `ondevice rpc-server"
    ):
        check_server(parse_endpoint(f"127.0.0.1:{port}"), timeout=2)


def test_a_server_of_another_protocol_version_is_refused_with_both_versions():
    with (
        fake_server(Misbehaviour.WRONG_VERSION) as port,
        pytest.raises(RpcError, match=r"speaks protocol v6\.0\.0, this llama\.cpp v7\.0\.0"),
    ):
        check_server(parse_endpoint(f"127.0.0.1:{port}"), timeout=5)


def test_something_else_listening_is_not_an_rpc_server():
    with (
        fake_server(Misbehaviour.HTTP) as port,
        pytest.raises(RpcError, match=r"is not an RPC server of this llama\.cpp: it answered HELLO"),
    ):
        check_server(parse_endpoint(f"127.0.0.1:{port}"), timeout=5)


def test_a_listener_that_never_answers_times_out_in_one_line():
    with (
        fake_server(Misbehaviour.SILENT) as port,
        pytest.raises(RpcError, match=r"did not answer within 1 s: not an RPC server, or one busy"),
    ):
        check_server(parse_endpoint(f"127.0.0.1:{port}"), timeout=1)
