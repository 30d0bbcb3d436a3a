"""Fault test: `kill -9` the notifier process mid-burst, start another: nothing is lost, and
nothing is sent twice under two delivery ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import DeploymentTriggered, NotificationScheduled
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.notifier import (
    notification_events,
    receivers,
    recorded,
    settle,
    write_config,
)
from tests.support.processes import service_env, service_processes

pytestmark = pytest.mark.slow

BURST = 300
CONCURRENCY = 8


async def append_triggered(
    store: EventStore, n: int, *, prefix: str, trigger: str, commit: str = ""
) -> None:
    """`n` deployments `<prefix><i>` triggered (at commit `commit`, or one of their own)."""
    for i in range(n):
        triggered = DeploymentTriggered(
            deployment_id=f"{prefix}{i}",
            application_id="web1",
            trigger=vocabulary.Trigger(trigger),
            commit_hash=commit or f"{i:040x}",
        )
        await store.append(f"deployment-{prefix}{i}", new_events([triggered]), expected_version=ANY)


async def test_killed_mid_burst_loses_nothing_and_repeats_only_by_delivery_id(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """kill -9 while 300 notifications are being sent; a replica under another name takes the
    dead one's claims when they expire. Every notification is scheduled once, reaches the
    receiver, and is recorded delivered once; a repeat (the window between the receiver's
    answer and the record) carries the same delivery id and body, and is rare."""
    await backends.ensure_event_stream()
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]}],
        )
        env = service_env(
            backends,
            control.path,
            SLIPWAY_NOTIFIER_ACK_WAIT_S="2",
            SLIPWAY_NOTIFIER_LEASE_S="3",
            SLIPWAY_NOTIFIER_HTTP_TIMEOUT_S="2",
            SLIPWAY_NOTIFIER_CONCURRENCY=str(CONCURRENCY),
            SLIPWAY_NOTIFIER_BACKOFF_BASE_S="0.05",
            SLIPWAY_NOTIFIER_POLL_INTERVAL_S="0.2",
        )
        async with service_processes(env, tmp_path) as services, running(backends.relay().run):
            first = services.start("notifier", instance="notifier-a")
            await append_triggered(store, BURST, prefix="d", trigger="on_commit")
            await wait_until(
                lambda: len(server.received) >= 40,
                within_s=60,
                what="the first notifier delivering",
            )
            await first.kill_9()
            received_at_kill = len(server.counts("/hook"))
            services.start("notifier", instance="notifier-b")
            await wait_until(
                lambda: len(server.counts("/hook")) >= BURST,
                within_s=60,
                what=lambda: f"{len(server.counts('/hook'))} of {BURST} delivery ids received",
            )
            await wait_until(
                recorded(store, "notification_delivered", BURST),
                within_s=60,
                what="every delivery recorded",
            )
            await settle(1.0)

    assert received_at_kill < BURST, "the kill came after the burst: it tested nothing"
    counts = server.counts("/hook")
    scheduled = {
        e.event.notification_id: e.event
        for e in await store.read_all(limit=100_000)
        if isinstance(e.event, NotificationScheduled)
    }
    assert set(counts) == set(scheduled) and len(scheduled) == BURST  # none lost, none made twice
    assert await notification_events(store.pool) == {
        "notification_scheduled": BURST,
        "notification_delivered": BURST,
    }
    repeats = {delivery_id: n for delivery_id, n in counts.items() if n > 1}
    # Only what was in flight at the kill can come again, and only under its own id and body.
    assert sum(n - 1 for n in repeats.values()) <= CONCURRENCY
    for delivery_id in repeats:
        bodies = {
            json.dumps(r.body, sort_keys=True)
            for r in server.at("/hook")
            if r.delivery_id == delivery_id
        }
        assert bodies == {json.dumps(json.loads(scheduled[delivery_id].body), sort_keys=True)}


async def test_burst_mode_delivers_what_the_log_holds_then_exits(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """`python -m services.notifier --burst` delivers every notification of the events relayed
    so far, retries included, and exits 0."""
    js = backends.nc.jetstream()
    await backends.ensure_event_stream()
    async with receivers(fail_first=2) as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[
                {"name": "hook", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]},
                {"name": "flaky", "receiver": "flaky", "events": ["DEPLOYMENT_TRIGGERED"]},
            ],
        )
        env = service_env(
            backends,
            control.path,
            SLIPWAY_NOTIFIER_BACKOFF_BASE_S="0.05",
            SLIPWAY_NOTIFIER_POLL_INTERVAL_S="0.1",
        )
        async with running(backends.relay().run), service_processes(env, tmp_path) as services:
            await append_triggered(store, 5, prefix="b", trigger="on_command", commit="c0ffee")

            async def relayed() -> bool:
                info = await js.stream_info(backends.subjects.events_stream)
                return info.state.messages >= 5

            await wait_until(relayed, within_s=30, what="5 events relayed")
            code = await services.start("notifier", "--burst").exited(within_s=60)

    assert code == 0
    assert len(server.counts("/hook")) == 5 and len(server.counts("/flaky")) == 5
    assert await notification_events(store.pool) == {
        "notification_scheduled": 10,
        "notification_attempt_failed": 2,
        "notification_delivered": 10,
    }
