"""Fault test: `kill -9` the notifier process mid-burst, start another: nothing is lost, and
nothing is sent twice under two delivery ids."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import DeploymentTriggered, NotificationScheduled
from shared.messaging import ensure_event_stream
from shared.relay import Relay
from shared.subjects import Subjects
from tests.notifier_support import (
    notification_events,
    receivers,
    recorded,
    settle,
    write_config,
)
from tests.support import running, wait_until

pytestmark = pytest.mark.slow

BURST = 300
CONCURRENCY = 8


def start_notifier(env: dict[str, str], instance: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.notifier"],
        env=os.environ | env | {"SLIPWAY_SERVICE_INSTANCE": instance},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_killed_mid_burst_loses_nothing_and_repeats_only_by_delivery_id(
    app_database_url: str,
    schema: str,
    nats_url: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    tmp_path: Path,
) -> None:
    """kill -9 while 300 notifications are being sent; a replica under another name takes the
    dead one's claims when they expire. Every notification is scheduled once, reaches the
    receiver, and is recorded delivered once; a repeat (the window between the receiver's
    answer and the record) carries the same delivery id and body, and is rare."""
    await ensure_event_stream(nc.jetstream(), subjects)
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]}],
        )
        env = {
            "SLIPWAY_DATABASE_URL": app_database_url,
            "SLIPWAY_DATABASE_SCHEMA": schema,
            "SLIPWAY_NATS_URL": nats_url,
            "SLIPWAY_SUBJECT_PREFIX": subjects.prefix,
            "SLIPWAY_CONTROL_CONFIG": str(control.path),
            "SLIPWAY_HEALTH_PORT": "-1",
            "SLIPWAY_NOTIFIER_ACK_WAIT_S": "2",
            "SLIPWAY_NOTIFIER_LEASE_S": "3",
            "SLIPWAY_NOTIFIER_HTTP_TIMEOUT_S": "2",
            "SLIPWAY_NOTIFIER_CONCURRENCY": str(CONCURRENCY),
            "SLIPWAY_NOTIFIER_BACKOFF_BASE_S": "0.05",
            "SLIPWAY_NOTIFIER_POLL_INTERVAL_S": "0.2",
        }
        relay = Relay(
            database_url=app_database_url, schema=schema, js=nc.jetstream(), subjects=subjects
        )
        first = start_notifier(env, "notifier-a")
        second: subprocess.Popen[bytes] | None = None
        try:
            async with running(relay.run):
                for i in range(BURST):
                    await store.append(
                        f"deployment-d{i}",
                        new_events(
                            [
                                DeploymentTriggered(
                                    deployment_id=f"d{i}",
                                    application_id="web1",
                                    trigger="on_commit",
                                    commit_hash=f"{i:040x}",
                                )
                            ]
                        ),
                        expected_version=ANY,
                    )
                await wait_until(
                    lambda: len(server.received) >= 40,
                    within_s=60,
                    what="the first notifier delivering",
                )
                first.send_signal(signal.SIGKILL)
                first.wait()
                received_at_kill = len(server.counts("/hook"))
                second = start_notifier(env, "notifier-b")
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
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    process.wait()

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
    app_database_url: str,
    schema: str,
    nats_url: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    tmp_path: Path,
) -> None:
    """`python -m services.notifier --burst` delivers every notification of the events relayed
    so far, retries included, and exits 0."""
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    async with receivers(fail_first=2) as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[
                {"name": "hook", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]},
                {"name": "flaky", "receiver": "flaky", "events": ["DEPLOYMENT_TRIGGERED"]},
            ],
        )
        relay = Relay(database_url=app_database_url, schema=schema, js=js, subjects=subjects)
        async with running(relay.run):
            for i in range(5):
                await store.append(
                    f"deployment-b{i}",
                    new_events(
                        [
                            DeploymentTriggered(
                                deployment_id=f"b{i}",
                                application_id="web1",
                                trigger="on_command",
                                commit_hash="c0ffee",
                            )
                        ]
                    ),
                    expected_version=ANY,
                )

            async def relayed() -> bool:
                info = await js.stream_info(subjects.events_stream)
                return info.state.messages >= 5

            await wait_until(relayed, within_s=30, what="5 events relayed")
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.notifier",
                "--burst",
                env=os.environ
                | {
                    "SLIPWAY_DATABASE_URL": app_database_url,
                    "SLIPWAY_DATABASE_SCHEMA": schema,
                    "SLIPWAY_NATS_URL": nats_url,
                    "SLIPWAY_SUBJECT_PREFIX": subjects.prefix,
                    "SLIPWAY_CONTROL_CONFIG": str(control.path),
                    "SLIPWAY_HEALTH_PORT": "-1",
                    "SLIPWAY_NOTIFIER_BACKOFF_BASE_S": "0.05",
                    "SLIPWAY_NOTIFIER_POLL_INTERVAL_S": "0.1",
                },
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            async with asyncio.timeout(60):
                code = await process.wait()

    assert code == 0
    assert len(server.counts("/hook")) == 5 and len(server.counts("/flaky")) == 5
    assert await notification_events(store.pool) == {
        "notification_scheduled": 10,
        "notification_attempt_failed": 2,
        "notification_delivered": 10,
    }
