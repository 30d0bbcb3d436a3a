"""The gitwatcher's async shell: every repository's poll loop, and on-command triggers.

`RepositoryWatcher` (watcher.py) polls one repository and turns its commits
into `CommitObserved` and `DeploymentTriggered`; `WebhookServer` (server.py)
verifies push webhooks and wakes the right loop; `Gitwatcher` here builds one
watcher per configured repository and turns `SyncRequested` into an
on-command trigger at the branch head (an `EventConsumer` handler).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from structlog.contextvars import bound_contextvars

from services.gitwatcher.chains import ChainRunner
from services.gitwatcher.handlers import on_command_trigger
from services.gitwatcher.server import DEFAULT_MAX_BODY_BYTES, WebhookServer
from services.gitwatcher.watcher import (
    AppConfigReader,
    Metrics,
    RepositoryWatcher,
    WatchedRepository,
    append_trigger,
    event_metadata,
)
from shared.consumer import EventConsumer
from shared.errors import ConfigError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import SyncRequested
from shared.git import GitCache
from shared.logs import get_logger
from shared.subjects import Subjects

__all__ = [
    "AppConfigReader",
    "Gitwatcher",
    "RepositoryWatcher",
    "WatchedRepository",
    "WebhookServer",
]

log = get_logger("slipway.gitwatcher")

_APP = "SELECT repository_id, disabled FROM applications WHERE application_id = $1"


class Gitwatcher:
    """Every watched repository's loop, the sync-request handler, and the webhook entry point."""

    def __init__(
        self,
        *,
        store: EventStore,
        cache: GitCache,
        repositories: Iterable[WatchedRepository],
        read_config: AppConfigReader,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.metrics = Metrics(registry)
        self.watchers: dict[str, RepositoryWatcher] = {}
        for spec in repositories:
            if spec.repository_id in self.watchers:
                raise ConfigError(f"repository {spec.repository_id!r} is configured twice")
            self.watchers[spec.repository_id] = RepositoryWatcher(
                spec,
                store=store,
                git=cache.repository(spec.remote),
                read_config=read_config,
                backoff_initial_s=backoff_initial_s,
                backoff_max_s=backoff_max_s,
                metrics=self.metrics,
            )

    def poll_components(self) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
        """One poll loop per watched repository, as the service's components."""
        return [watcher.run for watcher in self.watchers.values()]

    def burst_components(self) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
        """One poll of each repository, for a burst run (until nothing is left)."""
        return [watcher.run_once for watcher in self.watchers.values()]

    async def poll_all(self) -> None:
        """Poll every repository once, concurrently (for tests and one-off runs)."""
        await asyncio.gather(*(w.poll() for w in self.watchers.values()))

    # On-command triggers ---------------------------------------------------------

    def sync_consumer(
        self, *, js: JetStreamContext, subjects: Subjects, name: str = "gitwatcher-sync", **kw: Any
    ) -> EventConsumer:
        """The durable consumer turning `SyncRequested` into on-command triggers."""
        return EventConsumer(
            name=name,
            js=js,
            pool=self.store.pool,
            registry=self.store.registry,
            subjects=subjects,
            handler=self.handle_sync_requested,
            handles=(SyncRequested,),
            # The handler may fetch from git: one event per transaction keeps it short.
            events_per_transaction=1,
            **kw,
        )

    async def handle_sync_requested(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Trigger the application at its branch head, inside the consumer's transaction."""
        request = event.event
        if not isinstance(request, SyncRequested):
            return
        with bound_contextvars(application_id=request.application_id):
            row = await conn.fetchrow(_APP, request.application_id)
            if row is None:
                # Registration and sync may arrive faster than the projection: retry later.
                raise Unavailable(f"application {request.application_id!r} is not registered (yet)")
            if row["disabled"]:
                log.warning(
                    "sync_ignored", reason="application disabled", request_id=request.request_id
                )
                return
            watcher = self.watchers.get(row["repository_id"])
            if watcher is None:
                log.error(
                    "sync_ignored",
                    reason=f"repository {row['repository_id']!r} is not watched here",
                    request_id=request.request_id,
                )
                return
            head = await watcher.head_for_sync()
            commit = await watcher.git.commit(head)
            trigger = on_command_trigger(
                request,
                repository_id=watcher.spec.repository_id,
                branch=watcher.spec.branch,
                commit_hash=head,
                commit_author=commit.author,
                commit_message=commit.message,
                committed_at=commit.committed_at,
            )
            metadata = event_metadata(
                causation_id=str(event.event_id),
                correlation_id=event.metadata.correlation_id or trigger.deployment_id,
            )
            if await append_trigger(self.store, trigger, metadata, conn=conn):
                self.metrics.triggers.labels("on_command").inc()
                log.info(
                    "deployment_triggered",
                    trigger="on_command",
                    deployment_id=trigger.deployment_id,
                    commit_hash=head,
                    strategy=trigger.strategy,
                )

    def chain_consumer(
        self, *, js: JetStreamContext, subjects: Subjects, **kw: Any
    ) -> EventConsumer:
        """The durable consumer of `DeploymentCompleted` that starts and follows chains."""
        return ChainRunner(self.store, self.watchers, self.metrics).consumer(
            js=js, subjects=subjects, **kw
        )

    def webhook_server(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reject_record_window_s: float = 60.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> WebhookServer:
        """The push-webhook endpoint for these repositories."""
        return WebhookServer(
            self.watchers,
            store=self.store,
            metrics=self.metrics,
            host=host,
            port=port,
            reject_record_window_s=reject_record_window_s,
            max_body_bytes=max_body_bytes,
        )
