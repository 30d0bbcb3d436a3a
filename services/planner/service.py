"""The planner's async shell: consume triggers and completions, load, decide, append.

For each `DeploymentTriggered` the deployment first takes its place in its
application's FIFO queue (`planner_deployments`, committed on its own, so a
trigger whose planning is retried keeps its place). Then, inside the
consumer's transaction and under a per-application advisory lock: if it is at
the head and nothing is active, it is planned — the app is read from its
stream, the repository fetched, the config and manifests loaded at the
trigger's commit and at the running one, `shared.planning` decides — and
`DeploymentPlanned` or `DeploymentPlanFailed` is appended; otherwise
`DeploymentQueued` is. `DeploymentCompleted` frees the application and plans
the next waiting deployment; a success also becomes the running commit.

Git being unreachable is transient: on a trigger the handler raises, so the
message is redelivered with back-off; when planning the next deployment after
a completion, or in the periodic `retry_waiting` sweep, the deployment stays
waiting and the sweep tries again. After `give_up_after_s` of that the plan
fails, with git's words as the reason, so one dead remote cannot hold an
application's queue forever.

Transactions: slow work (git, rendering) happens before the transaction's
first write, so an open planning transaction never holds back the log's
commit horizon (readers wait only for transactions that have written); all
appends and table updates come at the end, appends first.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter
from structlog.contextvars import bound_contextvars as structlog_bound

from services.planner.decider import (
    AppQueue,
    Ignore,
    PlanNow,
    QueueBehind,
    gave_up,
    next_to_plan,
    on_triggered,
    plan_failed,
    planned,
    queued,
    trigger_info,
)
from shared.aio import sleep_or_stop
from shared.applications import Application, application_of
from shared.db import CONNECTION_ERRORS
from shared.deploysource import (
    DeploySource,
    ensure_commit,
    load_deploy_source,
    register_secrets,
)
from shared.errors import ConfigError, Rejected, SlipwayError, Unavailable
from shared.eventlog import EventStore, deterministic_event_id
from shared.events.base import Event, Metadata, NewEvent, RecordedEvent
from shared.events.catalog import DeploymentCompleted, DeploymentTriggered
from shared.git import GitCache, GitError, GitRepository
from shared.logs import get_logger
from shared.planning import Plan, PlanError, make_plan
from shared.redaction import redact
from shared.streams import stream_id
from shared.tracing import current_trace_headers

__all__ = ["Planner", "RepositoryRef", "lock_key"]

log = get_logger("slipway.planner")
_tracer = trace.get_tracer("slipway.planner")

CONSUMER_NAME: Final = "planner"

_ENQUEUE = """
INSERT INTO planner_deployments (deployment_id, application_id, state, commit_hash,
                                 planning_since)
SELECT $1, $2, 'waiting', $3,
       CASE WHEN EXISTS (SELECT 1 FROM planner_deployments
                         WHERE application_id = $2 AND state IN ('waiting', 'active'))
            THEN NULL ELSE $4::timestamptz END
ON CONFLICT (deployment_id) DO NOTHING
"""
_QUEUE = """
SELECT deployment_id, state, commit_hash, planning_since FROM planner_deployments
WHERE application_id = $1 AND state IN ('waiting', 'active') ORDER BY seq
"""
_DEPLOYMENT = "SELECT state, commit_hash FROM planner_deployments WHERE deployment_id = $1"
_SET_STATE = """
UPDATE planner_deployments SET state = $2, updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_PLANNING_SINCE = """
UPDATE planner_deployments
SET planning_since = coalesce(planning_since, $2), updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_RUNNING = "SELECT running_commit FROM planner_applications WHERE application_id = $1"
_SET_RUNNING = """
INSERT INTO planner_applications (application_id, running_commit, deployment_id)
VALUES ($1, $2, $3)
ON CONFLICT (application_id) DO UPDATE
  SET running_commit = excluded.running_commit, deployment_id = excluded.deployment_id,
      updated_at = clock_timestamp()
"""
# Applications whose oldest waiting deployment is not being planned by anyone:
# nothing active, and it has waited at least a retry interval.
_STALLED = """
SELECT DISTINCT w.application_id FROM planner_deployments w
WHERE w.state = 'waiting' AND w.created_at < $1
  AND NOT EXISTS (SELECT 1 FROM planner_deployments a
                  WHERE a.application_id = w.application_id AND a.state = 'active')
"""


# A sweep that cannot reach PostgreSQL logs it and tries again at the next period.
_SWEEP_TRANSIENT: Final[tuple[type[BaseException], ...]] = (Unavailable, *CONNECTION_ERRORS)


@dataclass(frozen=True)
class RepositoryRef:
    """Where a repository of the control config lives."""

    remote: str
    branch: str = ""


def lock_key(application_id: str) -> int:
    """The advisory-lock key that serialises the planner's work on one application."""
    digest = hashlib.blake2b(f"slipway-planner:{application_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class _Transient(SlipwayError):
    """Planning hit a transient failure (git unreachable); `cause` says which."""

    def __init__(self, cause: Unavailable) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Writes:
    """What one transaction will write, collected while deciding and flushed at the end."""

    appends: list[tuple[str, list[NewEvent], int]] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)
    planning_since: list[str] = field(default_factory=list)
    running: list[tuple[str, str, str]] = field(default_factory=list)


class Planner:
    """Plans deployments: the handler for the `planner` consumer, and the retry sweep."""

    def __init__(
        self,
        *,
        store: EventStore,
        git: GitCache,
        repositories: Mapping[str, RepositoryRef],
        control_config_path: str = "",
        give_up_after_s: float = 900.0,
        retry_interval_s: float = 15.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.git = git
        self.repositories = dict(repositories)
        self.control_config_path = control_config_path
        self.give_up_after_s = give_up_after_s
        self.retry_interval_s = retry_interval_s
        self.clock = clock
        self.outcomes: dict[str, int] = {}
        self._counter = (
            Counter(
                "slipway_planner_outcomes",
                "deployments handled by the planner, by outcome",
                ["outcome"],
                registry=registry,
            )
            if registry is not None
            else None
        )

    # The consumer's handler ---------------------------------------------------------

    async def handle(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Handle one event inside the consumer's transaction; raise to have it redelivered."""
        match event.event:
            case DeploymentTriggered() as trigger:
                await self._on_triggered(event, trigger, conn)
            case DeploymentCompleted() as completed:
                await self._on_completed(event, completed, conn)
            case _:
                pass

    async def _on_triggered(
        self, event: RecordedEvent, trigger: DeploymentTriggered, conn: asyncpg.Connection
    ) -> None:
        deployment_id, app_id = trigger.deployment_id, trigger.application_id
        with structlog_bound(deployment_id=deployment_id, application_id=app_id):
            # Its own transaction: the place in the queue outlives a failed attempt.
            await self.store.pool.execute(
                _ENQUEUE, deployment_id, app_id, trigger.commit_hash, self.clock()
            )
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(app_id))
            queue, since = await _load_queue(conn, app_id)
            writes = _Writes()
            match on_triggered(queue, deployment_id):
                case Ignore(reason=reason):
                    log.info("trigger_ignored", reason=reason)
                    return
                case QueueBehind(behind=behind):
                    self._queue(writes, event, trigger, behind)
                case PlanNow():
                    try:
                        done = await self._plan(conn, writes, event, deployment_id, app_id, since)
                    except _Transient as exc:
                        # Redelivered with back-off; the deployment keeps its place meanwhile.
                        raise exc.cause from exc
                    if not done:
                        queue = AppQueue(app_id, None, queue.waiting[1:])
                        await self._advance(conn, writes, event, queue, since)
            await self._flush(conn, writes)

    async def _on_completed(
        self, event: RecordedEvent, completed: DeploymentCompleted, conn: asyncpg.Connection
    ) -> None:
        deployment_id, app_id = completed.deployment_id, completed.application_id
        with structlog_bound(deployment_id=deployment_id, application_id=app_id):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(app_id))
            writes = _Writes()
            row = await conn.fetchrow(_DEPLOYMENT, deployment_id)
            if row is not None and row["state"] != "done":
                writes.states.append((deployment_id, "done"))
            if completed.status == "SUCCESS":
                commit = completed.commit_hash or (row["commit_hash"] if row else "")
                if commit:
                    writes.running.append((app_id, commit, deployment_id))
            queue, since = await _load_queue(conn, app_id)
            queue = _without(queue, deployment_id)
            log.info("deployment_completed", status=completed.status, next=next_to_plan(queue))
            await self._advance(conn, writes, event, queue, since, running=writes.running)
            await self._flush(conn, writes)

    # The retry sweep -------------------------------------------------------------------

    async def retry_waiting(self, stop: asyncio.Event) -> None:
        """Component: every `retry_interval_s`, plan what waits with nothing active."""
        while not stop.is_set():
            try:
                await self.sweep()
            except _SWEEP_TRANSIENT as exc:
                log.warning("retry_sweep_unavailable", error=f"{type(exc).__name__}: {exc}")
            await sleep_or_stop(stop, self.retry_interval_s)

    async def sweep(self) -> int:
        """One pass of the retry sweep; how many applications it advanced."""
        cutoff = self.clock().timestamp() - self.retry_interval_s
        stalled = await self.store.pool.fetch(_STALLED, datetime.fromtimestamp(cutoff, UTC))
        advanced = 0
        for row in stalled:
            app_id = row["application_id"]
            with structlog_bound(application_id=app_id):
                try:
                    advanced += await self._sweep_one(app_id)
                # The top of this loop, as a message loop's: one application's failure is
                # logged, and the others still get their turn; the next pass retries it.
                except Exception:
                    log.exception("retry_sweep_failed")
        return advanced

    async def _sweep_one(self, app_id: str) -> int:
        async with self.store.pool.acquire() as conn, conn.transaction():
            # Skip an application someone is planning right now: it is in good hands.
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_key(app_id)):
                return 0
            queue, since = await _load_queue(conn, app_id)
            if next_to_plan(queue) is None:
                return 0
            writes = _Writes()
            await self._advance(conn, writes, None, queue, since)
            await self._flush(conn, writes)
        return 1

    # Planning --------------------------------------------------------------------------

    async def _advance(
        self,
        conn: asyncpg.Connection,
        writes: _Writes,
        cause: RecordedEvent | None,
        queue: AppQueue,
        since: Mapping[str, datetime | None],
        *,
        running: list[tuple[str, str, str]] | None = None,
    ) -> None:
        """Plan waiting deployments, oldest first, until one is planned or one must wait."""
        while (deployment_id := next_to_plan(queue)) is not None:
            with structlog_bound(deployment_id=deployment_id):
                try:
                    done = await self._plan(
                        conn, writes, cause, deployment_id, queue.application_id, since,
                        running_override=running[-1][1] if running else None,
                    )  # fmt: skip
                except _Transient as exc:
                    log.warning("plan_deferred", error=str(exc), retry_in_s=self.retry_interval_s)
                    writes.planning_since.append(deployment_id)
                    self._count("deferred")
                    return
            if done:
                return
            queue = AppQueue(queue.application_id, None, queue.waiting[1:])

    async def _plan(
        self,
        conn: asyncpg.Connection,
        writes: _Writes,
        cause: RecordedEvent | None,
        deployment_id: str,
        app_id: str,
        since: Mapping[str, datetime | None],
        *,
        running_override: str | None = None,
    ) -> bool:
        """Plan one deployment into `writes`: True if planned, False if its plan failed.

        Raises `_Transient` when waiting may help and the deadline has not passed.
        """
        stream = stream_id("deployment", deployment_id)
        history = await self.store.read_stream(stream, conn=conn)
        trigger = next((e.event for e in history if isinstance(e.event, DeploymentTriggered)), None)
        if trigger is None:
            # Only a trigger puts a deployment in the queue; its stream must start with it.
            raise RuntimeError(f"{stream} has no DeploymentTriggered event")
        version = history[-1].stream_version
        if running_override is not None:
            running = running_override
        else:
            running = await conn.fetchval(_RUNNING, app_id) or ""
        with _tracer.start_as_current_span("plan deployment") as span:
            span.set_attribute("slipway.deployment_id", deployment_id)
            try:
                plan, app, repository_id = await self._make_plan(conn, trigger, running)
            except (PlanError, Rejected, ConfigError) as exc:
                reason = str(exc)
            except Unavailable as exc:
                if not gave_up(since.get(deployment_id), self.clock(), self.give_up_after_s):
                    raise _Transient(exc) from exc
                waited = _for_people(self.give_up_after_s)
                reason = f"{_unavailable_reason(exc)} (gave up after retrying for {waited})"
            else:
                event = planned(
                    trigger, app, plan, repository_id=repository_id, running_commit=running
                )
                writes.appends.append(
                    (stream, [self._new(cause, "planned", deployment_id, event)], version)
                )
                writes.states.append((deployment_id, "active"))
                decision = plan.decision
                log.info(
                    "deployment_planned",
                    strategy=str(decision.strategy),
                    rule=str(decision.rule),
                    summary=decision.summary,
                    stages=[s.name for s in plan.stages if s.visible],
                    commit=trigger.commit_hash,
                    running_commit=running,
                )
                self._count(str(decision.strategy))
                return True
        # The reason quotes config files, tool and git errors: redacted before the log has it.
        failed = plan_failed(trigger, redact(reason))
        writes.appends.append(
            (stream, [self._new(cause, "plan_failed", deployment_id, failed)], version)
        )
        writes.states.append((deployment_id, "done"))
        log.warning("deployment_plan_failed", reason=reason, commit=trigger.commit_hash)
        self._count("failed")
        return False

    async def _make_plan(
        self, conn: asyncpg.Connection, trigger: DeploymentTriggered, running: str
    ) -> tuple[Plan, Application, str]:
        app_stream = stream_id("application", trigger.application_id)
        app = application_of(e.event for e in await self.store.read_stream(app_stream, conn=conn))
        if app is None:
            raise PlanError(
                f"application {trigger.application_id} is not registered; register it with "
                "`slipway app add` and sync again"
            )
        if app.disabled:
            raise PlanError(f"application {app.name} is disabled; enable it and sync again")
        repository_id = trigger.repository_id or app.repository_id
        ref = self.repositories.get(repository_id)
        if ref is None:
            where = f" ({self.control_config_path})" if self.control_config_path else ""
            known = ", ".join(sorted(self.repositories)) or "none"
            raise PlanError(
                f"repository {repository_id!r} of application {app.name} is not in the control "
                f"config{where}; add it under spec.repositories (known: {known})"
            )
        repo = self.git.repository(ref.remote)
        target = await self._source(
            repo, trigger.commit_hash, app, what="the trigger's commit", references=True
        )
        running_manifests = None
        running_error = ""
        if running:
            try:
                source = await self._source(repo, running, app, what="the running commit")
                running_manifests = list(source.manifests)
            except (ConfigError, PlanError) as exc:
                running_error = str(exc)
        plan = make_plan(
            target.spec,
            trigger_info(trigger),
            list(target.manifests),
            running_manifests,
            running_commit=running,
            running_error=running_error,
        )
        return plan, app, repository_id

    async def _source(
        self,
        repo: GitRepository,
        commit: str,
        app: Application,
        *,
        what: str,
        references: bool = False,
    ) -> DeploySource:
        try:
            full = await ensure_commit(repo, commit)
            source = await load_deploy_source(
                repo, full, app.path, app.config_filename, references=references
            )
            register_secrets(source)  # a commit of the watched branch: its Secrets are real
            return source
        except GitError as exc:
            if exc.kind == "not_found":
                raise PlanError(
                    f"{what} {commit[:12]} is not in repository {_remote(repo)}: "
                    "was it force-pushed away? Sync a commit that exists"
                ) from exc
            if exc.kind == "auth":
                raise PlanError(
                    f"git refused access to {_remote(repo)} ({exc.reason}); fix the "
                    "repository's credentials and sync again"
                ) from exc
            raise

    # Writing ---------------------------------------------------------------------------

    def _queue(
        self, writes: _Writes, cause: RecordedEvent, trigger: DeploymentTriggered, behind: str
    ) -> None:
        stream = stream_id("deployment", trigger.deployment_id)
        event = queued(trigger, behind)
        writes.appends.append(
            (
                stream,
                [self._new(cause, "queued", trigger.deployment_id, event)],
                cause.stream_version,
            )
        )
        log.info("deployment_queued", behind=behind)
        self._count("queued")

    def _new(
        self, cause: RecordedEvent | None, what: str, deployment_id: str, event: Event
    ) -> NewEvent:
        context = current_trace_headers()
        metadata = Metadata(
            correlation_id=(cause.metadata.correlation_id if cause else None) or deployment_id,
            causation_id=str(cause.event_id) if cause else None,
            traceparent=context.get("traceparent"),
            tracestate=context.get("tracestate"),
            actor=CONSUMER_NAME,
            occurred_at=self.clock(),
        )
        # Derived from what it answers, so a plan appended twice is stored once.
        return NewEvent(
            event=event,
            event_id=deterministic_event_id(CONSUMER_NAME, what, deployment_id),
            metadata=metadata,
        )

    async def _flush(self, conn: asyncpg.Connection, writes: _Writes) -> None:
        for stream, events, version in writes.appends:
            await self.store.append(stream, events, expected_version=version, conn=conn)
        for deployment_id, state in writes.states:
            await conn.execute(_SET_STATE, deployment_id, state)
        for deployment_id in writes.planning_since:
            await conn.execute(_PLANNING_SINCE, deployment_id, self.clock())
        for app_id, commit, deployment_id in writes.running:
            await conn.execute(_SET_RUNNING, app_id, commit, deployment_id)

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self._counter is not None:
            self._counter.labels(outcome).inc()


async def _load_queue(
    conn: asyncpg.Connection, app_id: str
) -> tuple[AppQueue, dict[str, datetime | None]]:
    rows = await conn.fetch(_QUEUE, app_id)
    active = next((r["deployment_id"] for r in rows if r["state"] == "active"), None)
    waiting = tuple(r["deployment_id"] for r in rows if r["state"] == "waiting")
    since = {r["deployment_id"]: r["planning_since"] for r in rows}
    return AppQueue(app_id, active, waiting), since


def _without(queue: AppQueue, deployment_id: str) -> AppQueue:
    return AppQueue(
        queue.application_id,
        None if queue.active == deployment_id else queue.active,
        tuple(d for d in queue.waiting if d != deployment_id),
    )


def _remote(repo: GitRepository) -> str:
    return redact(repo.remote)


def _for_people(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min"


def _unavailable_reason(exc: Unavailable) -> str:
    if isinstance(exc, GitError):
        return f"git is unavailable: {exc.reason}"
    return f"unavailable: {exc}"
