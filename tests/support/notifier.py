"""The notifier tests' receivers (real local HTTP servers) and a notifier run in-process.

`Receivers` serves three endpoints on one free port:

- `/slack`: Slack-like — accepts a Block Kit payload (`text`, typed `blocks`,
  a header of at most 150 characters), answers `ok`, and `invalid_payload`
  (400) otherwise;
- `/hook`: a generic webhook that verifies the HMAC-SHA256 signature and
  answers 401 to a body it cannot verify;
- `/flaky`: answers 503 to its first `fail_first` requests, then 200.

Each accepted request is kept in `received` with its delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from services.notifier.delivery import DeliveryWorker
from services.notifier.notify.retry import RetryPolicy
from services.notifier.notify.webhook import DELIVERY_HEADER, verify
from services.notifier.outbox import Outbox
from services.notifier.service import CONSUMER_NAME, Notifier
from services.notifier.targets import SLACK_API_URL, targets_of
from shared.config.control import ControlConfig
from shared.config.control_loader import load_control_config
from shared.consumer import EventConsumer
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentTriggered,
    PlannedStage,
    StageCompleted,
    StageStarted,
)
from shared.http import RunningServer, serve
from tests.support import Backends, running, write_control_yaml

SECRET = b"test-hmac-secret"
FAST_RETRIES = RetryPolicy(base_s=0.05, cap_s=0.5)
SIGNATURE_KEY = "X-Slipway-Signature"


@dataclass(frozen=True)
class Received:
    path: str
    delivery_id: str
    body: Any
    headers: dict[str, str]


@dataclass
class Receivers:
    fail_first: int = 3
    status_when_failing: int = 503
    received: list[Received] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)
    _server: RunningServer | None = None
    _flaky_requests: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/slack", self._slack)
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/flaky", self._flaky)
        self._server = await serve(app, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"{self._server.url}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def counts(self, path: str) -> Counter[str]:
        """How many requests each delivery id made it through with."""
        return Counter(r.delivery_id for r in self.at(path))

    def _keep(self, request: web.Request, body: Any) -> None:
        self.received.append(
            Received(
                request.path, request.headers.get(DELIVERY_HEADER, ""), body, dict(request.headers)
            )
        )

    async def _slack(self, request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.read())
            ok = (
                isinstance(payload.get("text"), str)
                and all(isinstance(b.get("type"), str) for b in payload["blocks"])
                and len(payload["blocks"][0]["text"]["text"]) <= 150
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            self.refused.append((request.path, 400))
            return web.Response(status=400, text="invalid_payload")
        self._keep(request, payload)
        return web.Response(text="ok")

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_KEY)):
            self.refused.append((request.path, 401))
            return web.Response(status=401, text="bad signature")
        self._keep(request, json.loads(body))
        return web.Response(status=204)

    async def _flaky(self, request: web.Request) -> web.Response:
        self._flaky_requests += 1
        if self._flaky_requests <= self.fail_first:
            self.refused.append((request.path, self.status_when_failing))
            return web.Response(status=self.status_when_failing, text="down for now")
        self._keep(request, json.loads(await request.read()))
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def receivers(**kw: Any) -> AsyncIterator[Receivers]:
    server = Receivers(**kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def write_config(
    path: Path,
    server: Receivers,
    routes: Sequence[dict[str, Any]],
    *,
    slack_mentions: Sequence[dict[str, Any]] = (),
) -> ControlConfig:
    """A control config with receivers `slack`, `hook` and `flaky` at `server`, and `routes`."""
    receivers = [
        {
            "name": "slack",
            "slack": {
                "hookURL": server.url("/slack"),
                "mentionedAccounts": ["U0"],
                "mentions": list(slack_mentions),
            },
        },
        {
            "name": "hook",
            "webhook": {
                "url": server.url("/hook"),
                "signatureKey": SIGNATURE_KEY,
                "signatureValue": SECRET.decode(),
            },
        },
        {"name": "flaky", "webhook": {"url": server.url("/flaky")}},
    ]
    write_control_yaml(
        path,
        webAddress="https://slipway.example",
        notifications={"routes": list(routes), "receivers": receivers},
    )
    return load_control_config(path)


@dataclass
class InProcess:
    notifier: Notifier
    worker: DeliveryWorker
    consumer: EventConsumer


@contextlib.asynccontextmanager
async def notifier_running(
    control: ControlConfig,
    backends: Backends,
    *,
    policy: RetryPolicy = FAST_RETRIES,
    holders: Sequence[str] = ("n1",),
    lease_s: float = 5.0,
    concurrency: int = 8,
    slack_api_url: str = SLACK_API_URL,
) -> AsyncIterator[list[InProcess]]:
    """The relay and one notifier (consumer + worker) per holder, running for the block."""
    store, subjects, js = backends.store, backends.subjects, backends.nc.jetstream()
    await backends.ensure_event_stream()
    targets = targets_of(control, slack_api_url=slack_api_url)
    relay = backends.relay()
    replicas = []
    for holder in holders:
        notifier = Notifier(
            store=store,
            routes=control.spec.notifications.routes,
            targets=targets,
            web_url=control.spec.web_address,
        )
        worker = DeliveryWorker(
            outbox=Outbox(store, holder, lease_s=lease_s),
            targets=targets,
            policy=policy,
            concurrency=concurrency,
            http_timeout_s=2.0,
            poll_s=0.1,
        )

        async def wake(_event: RecordedEvent, worker: DeliveryWorker = worker) -> None:
            worker.wake.set()

        consumer = EventConsumer(
            name=CONSUMER_NAME,
            js=js,
            pool=store.pool,
            registry=store.registry,
            subjects=subjects,
            handler=notifier.handle,
            after_commit=wake,
            fetch_timeout_s=0.2,
        )
        replicas.append(InProcess(notifier, worker, consumer))
    components = [relay.run] + [c for r in replicas for c in (r.consumer.run, r.worker.run)]
    async with running(*components):
        yield replicas


async def notification_events(pool: asyncpg.Pool) -> Counter[str]:
    """How many events of each notification type the log holds."""
    rows = await pool.fetch(
        "SELECT event_type, count(*) AS n FROM events WHERE stream_id LIKE 'notification-%' "
        "GROUP BY event_type"
    )
    return Counter({r["event_type"]: r["n"] for r in rows})


def recorded(store: EventStore, event_type: str, n: int) -> Callable[[], Awaitable[bool]]:
    """A `wait_until` condition: at least `n` events of `event_type` in the notification streams."""

    async def enough() -> bool:
        return (await notification_events(store.pool))[event_type] >= n

    return enough


async def settle(seconds: float = 0.3) -> None:
    """Let anything that would still arrive (a duplicate) arrive before asserting its absence."""
    await asyncio.sleep(seconds)


NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


async def register(store: EventStore, app_id: str, name: str, env: str) -> None:
    await store.append(
        f"application-{app_id}",
        new_events(
            [
                ApplicationRegistered(
                    application_id=app_id,
                    name=name,
                    repository_id="config",
                    path=name,
                    labels=(("env", env),),
                )
            ]
        ),
        expected_version=ANY,
    )


def failing_deployment(deployment_id: str, app_id: str) -> list[Event]:
    stages = (
        PlannedStage(id="stage-0", name=vocabulary.StageName("K8S_CANARY_ROLLOUT"), index=0),
        PlannedStage(id="stage-1", name=vocabulary.StageName("ROLLBACK"), index=1, visible=False),
    )
    return [
        DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=app_id,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="feedface00112233",
            commit_message="Bump web to v2",
        ),
        DeploymentPlanned(
            deployment_id=deployment_id,
            application_id=app_id,
            commit_hash="feedface00112233",
            strategy=vocabulary.Strategy("pipeline"),
            summary="image web: v1 → v2",
            reason="pod template changed",
            stages=stages,
        ),
        StageStarted(
            deployment_id=deployment_id,
            stage_id="stage-0",
            started_at=NOW,
            name="K8S_CANARY_ROLLOUT",
        ),
        StageCompleted(
            deployment_id=deployment_id,
            stage_id="stage-0",
            status=vocabulary.StageStatus("FAILURE"),
            reason="canary pods crash",
        ),
        DeploymentRollingBack(
            deployment_id=deployment_id, application_id=app_id, reason="canary pods crash"
        ),
        StageStarted(
            deployment_id=deployment_id, stage_id="stage-1", started_at=NOW, name="ROLLBACK"
        ),
        DeploymentCompleted(
            deployment_id=deployment_id,
            application_id=app_id,
            status=vocabulary.DeploymentStatus("FAILURE"),
            reason="canary pods crash",
        ),
    ]
