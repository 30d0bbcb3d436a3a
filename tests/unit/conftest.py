"""The unit layer: pure and fast, no servers (`make unit`, well under 30 s in all).

A test belongs here when it runs the code under test in this process and touches no
server: no NATS, no PostgreSQL, no kubesim, no local HTTP server, no git repository, no
subprocess of ours (given events, when a command, then events; a table of inputs and
their answers). Reading fixture files is fine. The root conftest's server fixtures are
lazy, so this layer never starts one; the hook below refuses a unit test that asks for one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent

SERVER_FIXTURES = frozenset({"postgres", "nats_url"})
"""The fixtures that start a server; every database and NATS fixture depends on one of them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if wanted and item.path.is_relative_to(_HERE):
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but needs {', '.join(sorted(wanted))}: "
                "a test against a server belongs in tests/integration (see tests/README.md)"
            )
