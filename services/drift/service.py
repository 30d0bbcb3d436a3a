"""The drift service: compare each application's live resources with its git head.

Every `interval_s` it folds the log into the registered applications, and for
each one with a platform provider renders the manifests at the branch head,
reads the live objects Slipway labelled for it and runs
`shared.planning.drift.detect_drift`. It appends to `drift-<application_id>`
(with the version it read, so two replicas never record one change twice):

- `ApplicationSyncStateChanged` only when the state or the summary changes, or
  when the state differs from the application's sync state (`shared.syncstate`:
  a deployment that ended since the last verdict may have set it otherwise);
- with `trigger.onOutOfSync` enabled, a `DeploymentTriggered(on_out_of_sync)`
  on `deployment-<id>` whose id is derived from the app, the commit and "drift";
- for an `ApplicationDeleted(cascade=True)`, it deletes exactly the objects
  labelled `slipway.dev/application=<id>` and records `ApplicationResourcesDeleted`
  (what it deleted), or `ApplicationResourcesDeletionFailed` (what is left and
  why) and tries again next round.

Which cluster an application lives on is `platform_provider_of`'s rule, the
executor's too: an application registered without a provider is checked (and
deleted) on the control config's first one, never skipped in silence.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.aio import sleep_or_stop
from shared.config.control import KubernetesProviderConfig, platform_provider_of
from shared.deploysource import ensure_commit, load_deploy_source, register_secrets
from shared.errors import ConfigError, PlatformError
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.eventlog.position import START, LogPosition
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationRegistered,
    ApplicationResourcesDeleted,
    ApplicationResourcesDeletionFailed,
    ApplicationSyncStateChanged,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentTriggered,
)
from shared.git import GitCache
from shared.logs import get_logger
from shared.planning.drift import DriftResult, detect_drift
from shared.platform import KubernetesPlatform
from shared.redaction import DIFF_CHARS, REASON_CHARS, clip
from shared.syncstate import SYNC_EVENTS, SyncState, SyncStatus
from shared.syncstate import evolve as evolve_sync

__all__ = [
    "DriftDetector",
    "DriftState",
    "decide",
    "decide_deletion",
    "drift_deployment_id",
    "drift_stream",
]

log = get_logger(__name__)


def drift_stream(application_id: str) -> str:
    return f"drift-{application_id}"


def drift_deployment_id(application_id: str, commit_hash: str) -> str:
    """The same app, commit and cause always name the same deployment (retries dedupe)."""
    digest = hashlib.sha256(f"{application_id}\0{commit_hash}\0drift".encode()).hexdigest()
    return f"drift{digest[:21]}"


@dataclass(frozen=True)
class DriftState:
    """What the `drift-<id>` stream says so far."""

    version: int = NO_STREAM
    state: str = ""
    summary: str = ""
    resources_deleted: bool = False
    deletion_failure: str = ""
    """The reason of the last failed cascade delete ("" when none failed)."""


def evolve(state: DriftState, recorded: RecordedEvent) -> DriftState:
    state = dataclasses.replace(state, version=recorded.stream_version)
    match recorded.event:
        case ApplicationSyncStateChanged(state=s, summary=summary):
            return dataclasses.replace(state, state=s, summary=summary)
        case ApplicationResourcesDeleted():
            return dataclasses.replace(state, resources_deleted=True, deletion_failure="")
        case ApplicationResourcesDeletionFailed(reason=reason):
            return dataclasses.replace(state, deletion_failure=reason)
    return state


def decide_deletion(
    state: DriftState,
    *,
    application_id: str,
    deleted: Sequence[str],
    failures: Sequence[tuple[str, str]] = (),
    error: str = "",
) -> list[Event]:
    """What one cascade-delete attempt records on `drift-<id>`: done, failed, or nothing new.

    `failures` are (key, reason) of objects the cluster refused; `error` is why
    the attempt could not even start (no such platform provider, listing refused).
    A failure is recorded when it is new: retrying each round with the same
    refusal and nothing deleted appends nothing.
    """
    if not failures and not error:
        return [
            ApplicationResourcesDeleted(application_id=application_id, resources=tuple(deleted))
        ]
    reason = error or failures[0][1]
    if len(failures) > 1:
        reason += f" (and {len(failures) - 1} more refused)"
    reason = clip(reason, REASON_CHARS)  # before comparing: the state holds what was recorded
    if reason == state.deletion_failure and not deleted:
        return []
    return [
        ApplicationResourcesDeletionFailed(
            application_id=application_id,
            reason=reason,
            deleted=tuple(deleted),
            remaining=tuple(key for key, _ in failures),
        )
    ]


def decide(
    state: DriftState,
    result: DriftResult,
    *,
    application_id: str,
    commit_hash: str,
    on_out_of_sync: bool,
    repository_id: str = "",
    window_elapsed: bool = True,
    current: str = "",
) -> tuple[list[Event], list[Event]]:
    """(events for `drift-<id>`, events for the deployment stream): empty when nothing is due.

    The state change is recorded once. `current` is the application's sync state as
    its events derive it (`shared.syncstate`); a verdict that contradicts it is
    recorded even when drift's own last verdict said the same, so that the state
    shown never keeps a deployment's claim that the live objects disprove.

    The `onOutOfSync` trigger is asked for on every round the application is out of
    sync and `minWindow` has passed since its last deployment (PipeCD's rule: no
    redeploy storm right after a deploy); its id is derived from app and commit, so
    asking again appends nothing.
    """
    changed: list[Event] = []
    contradicted = current in (SyncState.SYNCED, SyncState.OUT_OF_SYNC) and result.state != current
    # Clipped before comparing: the state holds what was recorded.
    summary = clip(result.summary, REASON_CHARS)
    if (result.state, summary) != (state.state, state.summary) or contradicted:
        changed.append(
            ApplicationSyncStateChanged(
                application_id=application_id,
                state=result.state,
                summary=summary,
                diff=clip(result.diff, DIFF_CHARS),
                commit_hash=commit_hash,
            )
        )
    if result.state != "OUT_OF_SYNC" or not on_out_of_sync or not window_elapsed:
        return changed, []
    trigger = DeploymentTriggered(
        deployment_id=drift_deployment_id(application_id, commit_hash),
        application_id=application_id,
        trigger="on_out_of_sync",
        commit_hash=commit_hash,
        repository_id=repository_id,
    )
    return changed, [trigger]


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


class DriftDetector:
    """Polls the log and the clusters; `run(stop)` is its one component."""

    def __init__(
        self,
        *,
        store: EventStore,
        git: GitCache,
        repositories: Mapping[str, str],
        platforms: Mapping[str, KubernetesProviderConfig],
        branches: Mapping[str, str] | None = None,
        interval_s: float = 30.0,
    ) -> None:
        self.store = store
        self.git = git
        self.repositories = repositories
        self.platforms = platforms
        self.branches = dict(branches or {})
        self.interval_s = interval_s
        self._apps: dict[str, _App] = {}
        self._position: LogPosition = START

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_all()
            except Exception:  # one bad round must not end the service
                log.exception("drift_round_failed")
            await sleep_or_stop(stop, self.interval_s)

    async def check_all(self) -> None:
        await self._catch_up()
        for app in list(self._apps.values()):
            application_id = app.registered.application_id
            try:
                if app.deleted is None:
                    await self.check(app.registered)
                elif app.deleted.cascade:
                    await self.delete_resources(app.registered)
            except Exception:  # the next app still gets its turn
                log.exception("drift_check_failed", application_id=application_id)

    async def check(self, app: ApplicationRegistered) -> DriftResult | None:
        """Detect drift for one application and record what changed; None if not checkable.

        Not checked while a deployment of the application is active (see `_App`).
        """
        known = self._apps.get(app.application_id)
        if known is not None and known.active_deployments:
            log.debug("drift_paused_during_deployment", application_id=app.application_id)
            return None
        try:
            _, config = platform_provider_of(app.platform_provider, self.platforms)
            remote = self.repositories.get(app.repository_id)
            if remote is None:
                raise ConfigError(f"repository {app.repository_id!r} is not in the control config")
        except ConfigError as exc:
            if known is not None and known.unchecked != str(exc):
                known.unchecked = str(exc)
                log.warning("drift_not_checked", application_id=app.application_id, reason=str(exc))
            return None
        repo = self.git.repository(remote)
        await repo.fetch()
        head = await ensure_commit(
            repo, await repo.branch_head(self.branches.get(app.repository_id, "main"))
        )
        source = await load_deploy_source(repo, head, app.path, app.config_filename)
        register_secrets(source)
        spec = source.config.spec
        async with _platform(config) as platform:
            live = await platform.live_resources(app.application_id)
        result = detect_drift(
            source.manifests,
            live,
            namespace=spec.input.namespace,
            ignore_fields=spec.drift_detection.ignore_fields if spec.drift_detection else (),
        )
        state = await self._state(app.application_id)
        last_completed = known.last_completed_at if known is not None else None
        min_window = spec.trigger.on_out_of_sync.min_window.timedelta
        window_elapsed = last_completed is None or datetime.now(UTC) - last_completed >= min_window
        drift_events, trigger = decide(
            state,
            result,
            application_id=app.application_id,
            commit_hash=head,
            on_out_of_sync=not spec.trigger.on_out_of_sync.disabled,
            repository_id=app.repository_id,
            window_elapsed=window_elapsed,
            current=known.sync.state if known is not None else "",
        )
        if drift_events:
            await self.store.append(
                drift_stream(app.application_id),
                new_events(drift_events),
                expected_version=state.version,
            )
            log.info("drift_state_changed", application_id=app.application_id, state=result.state)
        for event in trigger:
            assert isinstance(event, DeploymentTriggered)
            stream = f"deployment-{event.deployment_id}"
            if await self.store.stream_version(stream) == NO_STREAM:
                await self.store.append(stream, new_events([event]), expected_version=NO_STREAM)
        return result

    async def delete_resources(self, app: ApplicationRegistered) -> Sequence[str]:
        """Delete the live objects labelled for a cascade-deleted application, until all are.

        Records the outcome either way (`decide_deletion`), so whoever asked
        (`slipway app delete --cascade`) learns what was deleted or why not.
        """
        state = await self._state(app.application_id)
        if state.resources_deleted:
            return ()
        deleted: list[str] = []
        refused: list[tuple[str, PlatformError]] = []
        error = ""
        try:
            _, config = platform_provider_of(app.platform_provider, self.platforms)
            async with _platform(config) as platform:
                live = await platform.live_resources(app.application_id)
                deleted = await platform.delete(live, failures=refused)
        except (ConfigError, PlatformError) as exc:
            error = str(exc)
        events = decide_deletion(
            state,
            application_id=app.application_id,
            deleted=deleted,
            failures=[(key, str(exc)) for key, exc in refused],
            error=error,
        )
        if events:
            await self.store.append(
                drift_stream(app.application_id), new_events(events), expected_version=state.version
            )
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

    async def _state(self, application_id: str) -> DriftState:
        state = DriftState()
        async for recorded in self.store.iter_stream(drift_stream(application_id)):
            state = evolve(state, recorded)
        return state

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


def _platform(config: KubernetesProviderConfig) -> KubernetesPlatform:
    return KubernetesPlatform(config.kubeconfig_path or None, config.context or None)
