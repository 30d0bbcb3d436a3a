"""How the chaos run reads the system it is faulting: each read retried through the faults.

The run's own connections go straight to the servers (not through the
proxies), but PostgreSQL and nats-server restart under them and the API's
backends are faulted: a query is retried while PostgreSQL is away
(`db`), an API call while the API answers 5xx or nothing (`api`), for up to
`API_RETRY_S`. The event log is read here (deployments, notifications, the
commits the gitwatcher observed), as are the JetStream stream's messages and
what kubesim runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import asyncpg
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared import deployments
from shared.db import CONNECTION_ERRORS
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import CommitObserved, NotificationScheduled
from shared.messaging import MSG_ID
from shared.subjects import Subjects
from slipway_client import ApiClient, ApiError
from slipway_sandbox.chaos_plan import App
from slipway_sandbox.control import REPOSITORY_ID
from slipway_sandbox.demo_repo import image
from slipway_sandbox.kubesim_client import Kubesim

__all__ = ["API_RETRY_S", "POLL_S", "ChaosWorld"]

T = TypeVar("T")
Say = Callable[[str], None]

POLL_S: Final = 0.5
API_RETRY_S: Final = 60.0


class ChaosWorld:
    """The run's handles on the system (its pool, the API, NATS, kubesim), read with retries."""

    def __init__(
        self,
        *,
        store: EventStore,
        api: ApiClient,
        nats_url: str,
        kubesim_url: str,
        say: Say,
    ) -> None:
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.api_client = api
        self.nats_url = nats_url
        self.kubesim_url = kubesim_url
        self.say = say
        self.app_names: dict[str, str] = {}
        """Application id → name, as the API registered them."""

    def app_name(self, application_id: str) -> str:
        """The application's name, or its id when the API has not named it (yet)."""
        return self.app_names.get(application_id, application_id)

    def decode(self, row: asyncpg.Record) -> RecordedEvent:
        """A log row decoded as the store would."""
        return self.store.decode_row(row)

    async def db(self, query: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """`query` on the run's own pool, retried while PostgreSQL restarts under it."""
        deadline = time.monotonic() + API_RETRY_S
        while True:
            try:
                return await query(self.pool)
            except (*CONNECTION_ERRORS, Unavailable, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(POLL_S)

    async def api(self, call: Callable[[], T]) -> T:
        """`call` (an `ApiClient` method), retried while the API or its backends are faulted;
        an `ApiError` below 500 is the answer, and raised."""
        deadline = time.monotonic() + API_RETRY_S
        while True:
            try:
                return await asyncio.to_thread(call)
            except ApiError as exc:
                if exc.status < 500 or time.monotonic() > deadline:
                    raise
            except (SlipwayError, OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(POLL_S)

    async def until(
        self, check: Callable[[], Awaitable[bool]], *, within: float, what: str
    ) -> None:
        """Until `check` holds; TimeoutError (said) after `within` seconds."""
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                self.say(f"  not {what} within {within:.0f} s")
                raise TimeoutError(what)
            await asyncio.sleep(POLL_S)

    # --- the event log ------------------------------------------------------------------------

    async def observed(self, head: str) -> bool:
        """The gitwatcher has recorded `head`: only commits after it trigger deployments."""
        rows = await self.db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE stream_id = $1", f"repository-{REPOSITORY_ID}"
            )
        )
        return any(
            isinstance(event := self.decode(row).event, CommitObserved)
            and event.commit_hash == head
            for row in rows
        )

    async def deployment(self, deployment_id: str) -> deployments.Deployment:
        """A deployment's state, folded from its stream."""
        rows = await self.db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE stream_id = $1 ORDER BY stream_version",
                f"deployment-{deployment_id}",
            )
        )
        events = [self.decode(row) for row in rows]
        return deployments.fold((e.stream_version, e.event) for e in events)

    async def scheduled_notifications(self) -> list[NotificationScheduled]:
        """Every notification the notifier scheduled."""
        rows = await self.db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE event_type = 'notification_scheduled'"
            )
        )
        scheduled = []
        for row in rows:
            event = self.decode(row).event
            assert isinstance(event, NotificationScheduled)
            scheduled.append(event)
        return scheduled

    # --- JetStream and kubesim ----------------------------------------------------------------

    async def stream_messages(self) -> int:
        """How many messages the JetStream events stream holds."""
        nc = await nats.connect(self.nats_url)
        try:
            info = await nc.jetstream().stream_info(Subjects().events_stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    async def published_ids(self) -> set[str]:
        """The event ids in the JetStream events stream (the relay's `Nats-Msg-Id`)."""
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            stream = Subjects().events_stream
            info = await js.stream_info(stream)
            total = info.state.messages
            sub = await js.subscribe(
                Subjects().all_events,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
                stream=stream,
            )
            ids: set[str] = set()
            seen = 0
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                while seen < total:
                    msg = await sub.next_msg(timeout=10)
                    seen += 1
                    if msg.headers and MSG_ID in msg.headers:
                        ids.add(msg.headers[MSG_ID])
            await sub.unsubscribe()
            return ids
        finally:
            await nc.close()

    def live_tag(self, app: App) -> str | None:
        """The image tag kubesim runs for `app` (None: no workload)."""
        live = Kubesim(self.kubesim_url).deployment(app.env, app.service)
        if live is None:
            return None
        containers = live.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        wanted = image("", app.service)
        name = str(containers[0].get("image", "")) if containers else ""
        return name.removeprefix(wanted) if name.startswith(wanted) else name
