"""The drift service: compare each application's live resources with its git head.

Every `interval_s` it folds the log into the registered applications, and for
each one with a platform provider renders the manifests at the branch head,
reads the live objects Slipway labelled for it and runs
`shared.planning.drift.detect_drift`. It appends to `drift-<application_id>`
(with the version it read, so two replicas never record one change twice):

- `ApplicationSyncStateChanged` only when the state or the summary changes, or
  when the state differs from the application's sync state (`shared.syncstate`:
  a deployment that ended since the last verdict may have set it otherwise);
- `ApplicationHealthChanged` when the live workloads turn healthy or unhealthy
  (`shared.planning.health`: updated and ready replicas), and on the first check;
- on `liveresources-<id>`, `ApplicationLiveResourcesObserved` (its objects and what
  their controllers made, each with its health and provider, on every cluster its
  `resourceRoutes` use) when that list changed (`live_resources`); also during a
  deployment, when the pods move most. The tree and the drift check share one
  listing of each cluster a round (`_see`);
- with `trigger.onOutOfSync` enabled, a `DeploymentTriggered(on_out_of_sync)`
  on `deployment-<id>` whose id is derived from the app, the commit and "drift";
- for an `ApplicationDeleted(cascade=True)`, it deletes exactly the objects
  labelled `slipway.dev/application=<id>` and records `ApplicationResourcesDeleted`
  (what it deleted), or `ApplicationResourcesDeletionFailed` (what is left and
  why) and tries again next round.

Which cluster an application lives on is `platform_provider_of`'s rule, the
executor's too: an application registered without a provider is checked (and
deleted) on the control config's first one, never skipped in silence. Its
config's `resourceRoutes` (at the head) add the clusters they name, compared
cluster by cluster (`shared.platform.clusters`, `detect_drift_across`); a cascade
delete whose config is gone from the head looks on every provider (the label names
the application alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.drift.decider import (
    DRIFT,
    Judge,
    RecordDeletion,
    trigger_of,
)
from services.drift.live_resources import record_live_resources
from shared.aio import sleep_or_stop
from shared.config.control import KubernetesProviderConfig
from shared.config.resource_routes import ResourceRouter
from shared.decider import OPENING, StreamTaken
from shared.deploysource import (
    DeploySource,
    Reveal,
    ensure_commit,
    load_deploy_source,
    register_secrets,
)
from shared.errors import ConfigError, PlatformError
from shared.eventlog import EventStore, deterministic_event_id
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute, load
from shared.eventlog.position import START, LogPosition
from shared.events.base import RecordedEvent
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentTriggered,
)
from shared.events.streams import deployment_stream, drift_stream
from shared.git import GitCache, GitError
from shared.logs import get_logger
from shared.planning.drift import DriftResult, detect_drift_across
from shared.planning.health import health_of
from shared.platform.clusters import Clusters
from shared.platform.livestate import Labelled
from shared.platform.routed import RoutedPlatform
from shared.secrets import KeyRing
from shared.syncstate import SYNC_EVENTS, SyncStatus
from shared.syncstate import evolve as evolve_sync

__all__ = ["DriftDetector"]

log = get_logger(__name__)

_ACTOR = "drift"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _App:
    registered: ApplicationRegistered
    deleted: ApplicationDeleted | None = None
    # Deployments triggered and not yet completed: while there is one, the live
    # state is moving towards git on purpose (canary copies, a half-done
    # rollout), so drift is not judged (and no out-of-sync trigger fires).
    active_deployments: set[str] = field(default_factory=set)
    last_completed_at: datetime | None = None
    unchecked: str = ""
    """Why drift cannot be checked (logged once, not every round); "" when it can."""
    sync: SyncStatus = field(default_factory=SyncStatus)


@dataclass(frozen=True)
class _Seen:
    """One round's read of an application (`DriftDetector._see`), shared by the live tree
    and the drift check so each cluster is listed once."""

    source: DeploySource | None = None
    router: ResourceRouter | None = None
    platform: RoutedPlatform | None = None
    """Its clusters, open while the round lasts; None when it has no provider."""
    listed: Mapping[str, Labelled] = field(default_factory=dict)
    """The objects labelled for it, per provider, as listed."""
    error: Exception | None = None
    """Why its head could not be read (a ConfigError or GitError), or its provider found."""


class DriftDetector:
    """Polls the log and the clusters; `run(stop)` is its one component."""

    def __init__(
        self,
        *,
        store: EventStore,
        git: GitCache,
        repositories: Mapping[str, str],
        platforms: Mapping[str, KubernetesProviderConfig],
        provider_labels: Mapping[str, Mapping[str, str]] | None = None,
        branches: Mapping[str, str] | None = None,
        secret_keys: KeyRing | None = None,
        interval_s: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.git = git
        self.repositories = repositories
        self.platforms = platforms
        # The providers' labels: `resourceRoutes` may pick providers by them.
        self.provider_labels = dict(provider_labels or {})
        self.branches = dict(branches or {})
        # Decrypts encryptedSecrets into the manifests compared with the cluster.
        self.reveal = Reveal(secret_keys)
        self.interval_s = interval_s
        self.clock = clock
        self._apps: dict[str, _App] = {}
        self._position: LogPosition = START

    async def run(self, stop: asyncio.Event) -> None:
        """Check every application each interval until stopped; a bad round is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.check_all()
            except Exception:  # one bad round must not end the service
                log.exception("drift_round_failed")
            await sleep_or_stop(stop, self.interval_s)

    async def check_all(self) -> None:
        """One round: catch up on the log, then check each application (or delete its resources)."""
        await self._catch_up()
        for app in list(self._apps.values()):
            application_id = app.registered.application_id
            try:
                if app.deleted is None:
                    async with Clusters(self.platforms, self.provider_labels) as clusters:
                        seen = await self._see(app.registered, clusters)
                        await self._record_live_or_log(app.registered, seen)
                        await self.check(app.registered, seen)
                elif app.deleted.cascade:
                    await self.delete_resources(app.registered)
            except Exception:  # the next app still gets its turn
                log.exception("drift_check_failed", application_id=application_id)

    async def _see(self, app: ApplicationRegistered, clusters: Clusters) -> _Seen:
        """Read the application once for this round: its head, its clusters (its own and
        those its head's `resourceRoutes` name) and the objects labelled for it on each;
        the live tree and the drift check both derive from this one listing."""
        try:
            own = clusters.provider_of(app.platform_provider)
        except ConfigError as exc:
            return _Seen(error=exc)
        source: DeploySource | None = None
        error: Exception | None = None
        try:
            source = await self._head(app)
            router = clusters.router(
                source.config, app.platform_provider, config_text=source.config_text
            )
        except (ConfigError, GitError) as exc:
            # The tree is still read from the application's own cluster; `check` says why
            # drift is not.
            error, router = exc, ResourceRouter(own)
        platform = await clusters.routed(router)
        listed = await platform.labelled(app.application_id)
        return _Seen(source, router, platform, listed, error)

    async def check(
        self, app: ApplicationRegistered, seen: _Seen | None = None
    ) -> DriftResult | None:
        """Detect drift for one application and record what changed; None if not checkable.
        From `seen` (this round's read of it, `_see`) when given, else read now.

        Not checked while a deployment of the application is active (see `_App`).
        """
        known = self._apps.get(app.application_id)
        if known is not None and known.active_deployments:
            log.debug("drift_paused_during_deployment", application_id=app.application_id)
            return None
        if seen is None:
            async with Clusters(self.platforms, self.provider_labels) as clusters:
                return await self._check_seen(app, known, await self._see(app, clusters))
        return await self._check_seen(app, known, seen)

    async def _check_seen(
        self, app: ApplicationRegistered, known: _App | None, seen: _Seen
    ) -> DriftResult | None:
        if isinstance(seen.error, ConfigError):
            if known is not None and known.unchecked != str(seen.error):
                known.unchecked = str(seen.error)
                log.warning(
                    "drift_not_checked", application_id=app.application_id, reason=str(seen.error)
                )
            return None
        if seen.error is not None:
            raise seen.error
        assert seen.source is not None and seen.router is not None and seen.platform is not None
        source, router, platform = seen.source, seen.router, seen.platform
        head = source.commit
        spec = source.config.spec
        live = await platform.live_resources(app.application_id, listed=seen.listed)
        placed = [
            (
                provider,
                [m for m in source.manifests if provider in router.providers_of(m.kind, m.name)],
                [m for m in live if m.cluster == provider],
            )
            for provider in platform.listed
        ]
        result = detect_drift_across(
            placed,
            namespace=spec.input.namespace,
            ignore_fields=spec.drift_detection.ignore_fields if spec.drift_detection else (),
        )
        judge = Judge(
            result=result,
            application_id=app.application_id,
            commit_hash=head,
            on_out_of_sync=not spec.trigger.on_out_of_sync.disabled,
            now=self.clock(),
            repository_id=app.repository_id,
            last_completed_at=known.last_completed_at if known is not None else None,
            min_window=spec.trigger.on_out_of_sync.min_window.timedelta,
            current=known.sync.state if known is not None else "",
            health=health_of(live),
        )
        judged = await execute(
            self.store, drift_stream(app.application_id), DRIFT, judge, envelope(actor=_ACTOR)
        )
        if judged.events:
            log.info("drift_state_changed", application_id=app.application_id, state=result.state)
        trigger = trigger_of(judge)
        if trigger is not None:
            await self._open(trigger)
        return result

    async def _record_live_or_log(self, app: ApplicationRegistered, seen: _Seen) -> None:
        try:
            await self.record_live(app, seen)
        except Exception:  # the drift check still gets its turn
            log.exception("drift_live_resources_failed", application_id=app.application_id)

    async def record_live(self, app: ApplicationRegistered, seen: _Seen | None = None) -> bool:
        """Read the application's live tree on each of its clusters (its own provider's and
        those its head's `resourceRoutes` name; its own alone when the head cannot be read)
        and record it if it changed; whether it did. From `seen` when given, else read now.

        Unlike the drift check it runs during a deployment too (the console shows the
        canary's pods coming and going)."""
        if seen is None:
            async with Clusters(self.platforms, self.provider_labels) as clusters:
                return await self._record_seen(app, await self._see(app, clusters))
        return await self._record_seen(app, seen)

    async def _record_seen(self, app: ApplicationRegistered, seen: _Seen) -> bool:
        if seen.platform is None:
            return False  # no cluster to read: `check` says why, once
        objects = await seen.platform.live_tree(app.application_id, listed=seen.listed)
        recorded = await record_live_resources(
            self.store, app.application_id, objects, actor=_ACTOR
        )
        if recorded is not None:
            log.info(
                "drift_live_resources_recorded",
                application_id=app.application_id,
                objects=len(recorded.resources),
                truncated=recorded.truncated,
            )
        return recorded is not None

    async def _head(self, app: ApplicationRegistered) -> DeploySource:
        """The application at its branch head (a ConfigError when the control config lacks
        its repository)."""
        remote = self.repositories.get(app.repository_id)
        if remote is None:
            raise ConfigError(f"repository {app.repository_id!r} is not in the control config")
        repo = self.git.repository(remote)
        await repo.fetch()
        head = await ensure_commit(
            repo, await repo.branch_head(self.branches.get(app.repository_id, "main"))
        )
        source = await load_deploy_source(
            repo, head, app.path, app.config_filename, reveal=self.reveal
        )
        register_secrets(source)
        return source

    async def _deletion_providers(
        self, app: ApplicationRegistered, clusters: Clusters
    ) -> tuple[str, ...]:
        """Where a deleted application's objects may be: its own provider and those its head
        config routes to, or every provider when that config cannot be read (often removed
        with the application)."""
        own = clusters.provider_of(app.platform_provider)
        try:
            source = await self._head(app)
            text = source.config_text
            return clusters.router(source.config, app.platform_provider, config_text=text).providers
        except (ConfigError, GitError) as exc:
            log.info("drift_delete_everywhere", application_id=app.application_id, reason=str(exc))
        return (own, *(name for name in clusters.configs if name != own))

    async def _open(self, trigger: DeploymentTriggered) -> None:
        """Open the deployment stream with `trigger` unless it is open already."""
        event_id = deterministic_event_id(_ACTOR, "trigger", trigger.deployment_id)
        with contextlib.suppress(StreamTaken):  # something else opened it: nothing to ask
            await execute(
                self.store,
                deployment_stream(trigger.deployment_id),
                OPENING,
                trigger,
                envelope(actor=_ACTOR, correlation_id=trigger.deployment_id),
                event_ids=lambda _index, _event: event_id,
            )

    async def delete_resources(self, app: ApplicationRegistered) -> Sequence[str]:
        """Delete the live objects labelled for a cascade-deleted application, until all are.

        Records the outcome either way (`decide_deletion`), so whoever asked
        (`slipway app delete --cascade`) learns what was deleted or why not.
        """
        stream = drift_stream(app.application_id)
        if (await load(self.store, stream, DRIFT)).state.resources_deleted:
            return ()
        deleted: list[str] = []
        refused: list[tuple[str, PlatformError]] = []
        error = ""
        clusters = Clusters(self.platforms, self.provider_labels)
        try:
            own, *others = await self._deletion_providers(app, clusters)
            async with clusters:
                platform = await clusters.routed(ResourceRouter(own), also_listed=others)
                live = await platform.live_resources(app.application_id)
                deleted = await platform.delete(live, failures=refused)
        except (ConfigError, PlatformError) as exc:
            error = str(exc)
        attempt = RecordDeletion(
            application_id=app.application_id,
            deleted=deleted,
            failures=[(key, str(exc)) for key, exc in refused],
            error=error,
        )
        await execute(self.store, stream, DRIFT, attempt, envelope(actor=_ACTOR))
        if error or refused:
            log.warning(
                "drift_resources_not_deleted",
                application_id=app.application_id,
                deleted=len(deleted),
                remaining=len(refused),
                reason=error or str(refused[0][1]),
            )
        else:
            log.info(
                "drift_resources_deleted", application_id=app.application_id, count=len(deleted)
            )
        return deleted

    async def _catch_up(self) -> None:
        while True:
            batch = await self.store.read_all(self._position)
            if not batch:
                return
            for recorded in batch:
                self._fold(recorded)
            self._position = LogPosition(batch[-1].tx_id, batch[-1].global_position)

    def _fold(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, SYNC_EVENTS):
            app_id = getattr(event, "application_id")  # noqa: B009 - every SYNC_EVENTS has one
            if app_id in self._apps:
                app = self._apps[app_id]
                app.sync = evolve_sync(app.sync, event, recorded.recorded_at)
        match recorded.event:
            case ApplicationRegistered() as registered:
                # A new registration describes the same application: what its
                # deployments said (active ones, sync state) still holds.
                known = self._apps.get(registered.application_id)
                self._apps[registered.application_id] = (
                    _App(registered)
                    if known is None
                    else dataclasses.replace(known, registered=registered, deleted=None)
                )
            case ApplicationDeleted(application_id=app_id) as deleted if app_id in self._apps:
                self._apps[app_id].deleted = deleted
            case DeploymentTriggered(application_id=app_id, deployment_id=deployment_id) if (
                app_id in self._apps
            ):
                self._apps[app_id].active_deployments.add(deployment_id)
            case DeploymentCompleted(application_id=app_id, deployment_id=deployment_id) if (
                app_id in self._apps
            ):
                self._apps[app_id].active_deployments.discard(deployment_id)
                self._apps[app_id].last_completed_at = recorded.recorded_at
            case DeploymentPlanFailed(application_id=app_id, deployment_id=deployment_id) if (
                app_id in self._apps
            ):
                self._apps[app_id].active_deployments.discard(deployment_id)
            case _:
                pass
