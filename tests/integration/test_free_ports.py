"""The sandbox's free ports: below the ephemeral range, one block per pytest-xdist worker.

A port taken with bind(0) and released can go to any outgoing connection before the
server binds it ("address already in use" under parallel workers); these ports cannot.
"""

from __future__ import annotations

import pytest

from slipway_sandbox._process import free_port


@pytest.mark.parametrize(("worker", "low"), [("gw0", 20000), ("gw1", 21500), ("gw2", 23000)])
def test_each_worker_has_its_own_block_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, worker: str, low: int
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    ports = [free_port() for _ in range(20)]
    assert all(low <= port < low + 1500 for port in ports), ports
    assert len(set(ports)) == len(ports)  # no port handed out twice in a row
    assert max(ports) < 32768  # Linux's default ip_local_port_range starts there
