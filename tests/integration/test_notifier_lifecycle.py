"""PIPED_STARTED / PIPED_STOPPED: a service process's start and stop reach the routes' receivers
(the notifier in-process with the relay, over real NATS + PostgreSQL and local receivers)."""

from __future__ import annotations

from pathlib import Path

from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ServiceStarted, ServiceStopped
from shared.events.streams import service_stream
from shared.testing import wait_until
from tests.support import Backends
from tests.support.notifier import (
    notifier_running,
    receivers,
    recorded,
    settle,
    write_config,
)

WAIT_S = 30.0
EVENT = "Slipway-Event"


async def test_service_start_and_crash_reach_their_routes(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A route for PIPED_STOPPED sends one signed webhook message naming the service, the
    instance and why it stopped; a route for the PIPED group gets the start and the stop."""
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[
                {"name": "stops", "receiver": "hook", "events": ["PIPED_STOPPED"]},
                {"name": "ops", "receiver": "slack", "groups": ["PIPED"]},
            ],
        )
        async with notifier_running(control, backends):
            for event in (
                ServiceStarted(service="executor", instance="executor-7d9f-2", version="0.1.0"),
                ServiceStopped(
                    service="executor",
                    instance="executor-7d9f-2",
                    version="0.1.0",
                    reason="component consume crashed",
                    crashed=True,
                ),
            ):
                await store.append(
                    service_stream("executor"), new_events([event]), expected_version=ANY
                )
            await wait_until(
                recorded(store, "notification_delivered", 3),
                within_s=WAIT_S,
                what=lambda: (
                    f"received {[(r.path, r.headers.get(EVENT)) for r in server.received]}"
                ),
            )
            await settle()

        assert server.refused == []
        [hook] = server.at("/hook")
        assert hook.headers[EVENT] == "PIPED_STOPPED"
        assert (hook.body["type"], hook.body["group"], hook.body["severity"]) == (
            "PIPED_STOPPED",
            "PIPED",
            "error",
        )
        assert hook.body["title"] == 'Service "executor" crashed'
        assert "executor-7d9f-2" in hook.body["text"]
        assert hook.body["reason"] == "component consume crashed"

        slack = {r.headers[EVENT]: r.body for r in server.at("/slack")}
        assert sorted(slack) == ["PIPED_STARTED", "PIPED_STOPPED"]
        assert len(server.at("/slack")) == 2
        assert slack["PIPED_STARTED"]["blocks"][0]["text"]["text"] == 'Service "executor" started'
        assert "executor-7d9f-2" in str(slack["PIPED_STARTED"]["blocks"])
