"""Which hosts `serve` and `rpc-server` treat as this machine only."""

from __future__ import annotations

import pytest

from ondevice.hosts import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.org", "localhost.evil"]
)
def test_other_hosts_reach_a_network(host):
    assert not is_loopback(host)
