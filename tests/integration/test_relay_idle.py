"""An idle relay: it backs off to `max_idle_sleep_s` between empty reads of the log (not 200
reads a second for ever), and the next event is still published within that."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from services.relay import relay as relay_module
from services.relay.relay import Relay
from shared import db
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationDisabled
from shared.testing import wait_until
from tests.support import running

IDLE_S = 1.0


async def test_an_idle_relay_reads_the_log_less_often_and_publishes_the_next_event(
    store: EventStore, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    connect = db.connect

    async def logged(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        conn = await connect(*args, **kwargs)
        conn.add_query_logger(lambda q: reads.append(q.query) if "FROM events" in q.query else None)
        return conn

    monkeypatch.setattr(relay_module, "connect", logged)
    async with running(relay.run):
        await store.append(
            "application-a",
            new_events([ApplicationDisabled(application_id="a")]),
            expected_version=ANY,
        )
        await wait_until(lambda: relay.published == 1, what="the first event published")
        before = len(reads)
        # Measuring an interval of idleness, not waiting for something to happen.
        await asyncio.sleep(IDLE_S)
        idle_reads = len(reads) - before
        # Every 5 ms at first (about 200 in the second), then every `max_idle_sleep_s`.
        assert idle_reads <= IDLE_S / relay.max_idle_sleep_s + 10, idle_reads
        await store.append(
            "application-a",
            new_events([ApplicationDisabled(application_id="a")]),
            expected_version=ANY,
        )
        await wait_until(
            lambda: relay.published == 2, within_s=2.0, what="the next event published"
        )
