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

Which deployment is waiting, active or done is the decider's fold of those
events (`evolve_queue`, `row_state`); `planner_deployments` caches it under
the lock and is written only from it. Appends to a deployment's stream go
through `shared.eventlog.execute` with the `PLANNING` decider.

Rooms: `decider.py` (pure), `queue.py` (the queue's cache in PostgreSQL and
the per-application lock), `sources.py` (git, config and manifests into a
plan), `prepared.py` (a batch's slow work before its transaction), `writes.py`
(what the handlers decided, written at the end of their transaction), and this
shell, which handles events and the retry sweep.

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

Batches: the consumer hands a fetched batch to `prepare` before its one
transaction; `prepared.py` does the batch's slow work there and keeps the
plans for the handlers. In the transaction each event is handled as above,
under its application's lock — the first handler takes the locks of all the
transaction's applications in one statement, in application order, so
replicas cannot deadlock — and a plan is taken from `prepare` only when it was
made for the running commit and the application stream's version read under the
lock (the queue itself is decided again there). What the handlers decide is
written by the transaction's last handler: the plans in one statement
(`EventStore.append_together`, all or none, else each alone as `execute` does),
then the queue rows in one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import asyncpg
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter
from structlog.contextvars import bound_contextvars as structlog_bound

from services.planner import queue as queues
from services.planner.decider import (
    PLANNING,
    AppQueue,
    Ignore,
    PlanNow,
    QueueBehind,
    evolve_queue,
    gave_up,
    next_to_plan,
    on_triggered,
    plan_failed,
    planned,
    queued,
    running_commit_of,
)
from services.planner.prepared import PreparedPlans
from services.planner.queue import lock_key
from services.planner.sources import PlanSources, RepositoryRef
from services.planner.writes import DeferredWrites, Writes, last_in_transaction
from shared.aio import sleep_or_stop
from shared.consumer.handling import events_in_transaction, first_in_transaction
from shared.db import CONNECTION_ERRORS
from shared.errors import ConfigError, Rejected, SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import Folded
from shared.events.base import Event, Metadata, RecordedEvent
from shared.events.catalog import (
    ApplicationAdopted,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentTriggered,
)
from shared.events.streams import deployment_stream
from shared.git import GitCache, GitError
from shared.logs import get_logger
from shared.planning import PlanError
from shared.redaction import redact

# `RepositoryRef` (sources) and `lock_key` (queue) are re-exported where callers look.
__all__ = ["CONSUMER_NAME", "HANDLES", "Planner", "RepositoryRef", "lock_key", "ordering_key"]

log = get_logger("slipway.planner")
_tracer = trace.get_tracer("slipway.planner")

CONSUMER_NAME: Final = "planner"
HANDLES: Final[tuple[type[Event], ...]] = (
    DeploymentTriggered,
    DeploymentCompleted,
    ApplicationAdopted,
)
"""What the planner's consumer handles: a trigger to plan (or queue), a completion that
frees its application's queue, and an adoption that says which commit runs. Its NATS
filter is derived from these."""


def ordering_key(event: RecordedEvent) -> str:
    """The planner's work on one application is ordered (and locked); different ones are
    independent. The consumer sorts a batch by it: the batch's lock order."""
    application_id = getattr(event.event, "application_id", "")
    return application_id if isinstance(application_id, str) else ""


# A sweep that cannot reach PostgreSQL logs it and tries again at the next period.
_SWEEP_TRANSIENT: Final[tuple[type[BaseException], ...]] = (Unavailable, *CONNECTION_ERRORS)


class _Transient(SlipwayError):
    """Planning hit a transient failure (git unreachable); `cause` says which."""

    def __init__(self, cause: Unavailable) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class _Held:
    """What a batch's transaction took at its first handler: the locks of all the batch's
    applications, and their queues read under them (each used once: its own writes move it)."""

    conn: asyncpg.Connection
    locked: frozenset[str]
    queues: dict[str, queues.LoadedQueue]


class Planner:
    """Plans deployments: the handler for the `planner` consumer, and the retry sweep."""

    def __init__(
        self,
        *,
        store: EventStore,
        git: GitCache,
        repositories: Mapping[str, RepositoryRef],
        control_config_path: str = "",
        platform_providers: Mapping[str, Mapping[str, str]] | None = None,
        give_up_after_s: float = 900.0,
        retry_interval_s: float = 15.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        registry: CollectorRegistry | None = None,
        prepare_concurrency: int = 4,
    ) -> None:
        self.store = store
        # What the batch's transaction holds (its first handler takes it).
        self._held: _Held | None = None
        self.sources = PlanSources(
            store=store,
            git=git,
            repositories=repositories,
            control_config_path=control_config_path,
            platform_providers=platform_providers,
        )
        self.prepared = PreparedPlans(
            store=store, sources=self.sources, clock=clock, concurrency=prepare_concurrency
        )
        self.give_up_after_s = give_up_after_s
        self.retry_interval_s = retry_interval_s
        self.clock = clock
        self.outcomes: dict[str, int] = {}
        self._deferred = DeferredWrites(store=store, clock=clock, consumer_name=CONSUMER_NAME)
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

    # The consumer's prepare hook ----------------------------------------------------

    async def prepare(self, events: Sequence[RecordedEvent]) -> None:
        """Before a batch's transaction: its slow work (`PreparedPlans.prepare`)."""
        await self.prepared.prepare(events)

    async def _lock_and_load(self, conn: asyncpg.Connection, app_id: str) -> queues.LoadedQueue:
        """Take the application's lock and read its queue under it.

        The first handler of a batch's transaction takes the locks of all the batch's
        applications in one statement, in application order (the order the consumer sorts
        every replica's batches in, so two transactions cannot wait on each other), and
        reads their queues in one query; the handlers after it use those.
        """
        if first_in_transaction():
            self._held = None
            batch_apps = set(filter(None, map(ordering_key, events_in_transaction())))
            if app_id in batch_apps and len(batch_apps) > 1:
                ordered = sorted(batch_apps)
                await queues.lock_all(conn, ordered)
                loaded = await queues.load_queues(conn, ordered)
                self._held = _Held(conn, frozenset(ordered), loaded)
        held = self._held
        if held is not None and held.conn is conn and app_id in held.locked:
            if (loaded_now := held.queues.pop(app_id, None)) is not None:
                return loaded_now
        else:
            await queues.lock(conn, app_id)
        # What this transaction decided so far is written first: the queue read follows it.
        await self._deferred.flush_pending(conn)
        return await queues.load_queue(conn, app_id)

    # The consumer's handler ---------------------------------------------------------

    async def handle(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Handle one event inside the consumer's transaction; raise to have it redelivered.

        In a transaction of several events, what each handler decides is written by the
        last one's, all together (one statement for the appends, one for the queue rows);
        a handler that raises rolls it all back, as before."""
        if first_in_transaction():
            self._deferred.forget(conn)  # a rolled-back transaction's, if any
        match event.event:
            case DeploymentTriggered() as trigger:
                await self._on_triggered(event, trigger, conn)
            case DeploymentCompleted() as completed:
                await self._on_completed(event, completed, conn)
            case ApplicationAdopted() as adopted:
                await self._on_adopted(adopted, conn)
            case _:
                pass
        if last_in_transaction(event):
            await self._deferred.flush_pending(conn)

    async def _on_adopted(self, adopted: ApplicationAdopted, conn: asyncpg.Connection) -> None:
        """What PipeCD left running is the running commit: the next deployment is planned
        against it (a pipeline with a rollback target), not as a first QUICK_SYNC."""
        app_id = adopted.application_id
        with structlog_bound(application_id=app_id):
            # Locked as its batch's handlers lock, and its queue read (so not used after this).
            await self._lock_and_load(conn, app_id)
            # Kept in order with the transaction's other writes (a completion before it).
            await self._deferred.write(
                conn, Writes(running=[(app_id, adopted.running_commit_hash, "")])
            )
            log.info("application_adopted", running_commit=adopted.running_commit_hash)

    async def _on_triggered(
        self, event: RecordedEvent, trigger: DeploymentTriggered, conn: asyncpg.Connection
    ) -> None:
        deployment_id, app_id = trigger.deployment_id, trigger.application_id
        with structlog_bound(deployment_id=deployment_id, application_id=app_id):
            # Its own transaction: the place in the queue outlives a failed attempt.
            if not self.prepared.enqueued(deployment_id):  # else `prepare` did (a row stays)
                await queues.enqueue(
                    self.store.pool, deployment_id, app_id, trigger.commit_hash, self.clock()
                )
            loaded = await self._lock_and_load(conn, app_id)
            queue, since, running = loaded.queue, loaded.since, loaded.running_commit
            writes = Writes()
            if event.stream_version == 0 and event.stream_id == deployment_stream(deployment_id):
                # The stream's first event, in hand: what its append will expect to follow.
                state = PLANNING.evolve(PLANNING.initial_state(), trigger)
                writes.known[event.stream_id] = Folded(state, 0, event.global_position)
            match on_triggered(queue, deployment_id):
                case Ignore(reason=reason):
                    log.info("trigger_ignored", reason=reason)
                    return
                case QueueBehind(behind=behind):
                    self._queue(writes, event, trigger, behind)
                case PlanNow():
                    try:
                        decided = await self._plan(
                            conn, writes, event, deployment_id, since, running,
                            trigger=trigger, app_version=loaded.app_version,
                        )  # fmt: skip
                    except _Transient as exc:
                        # Redelivered with back-off; the deployment keeps its place meanwhile.
                        raise exc.cause from exc
                    if isinstance(decided, DeploymentPlanFailed):
                        queue = evolve_queue(queue, decided)
                        await self._advance(
                            conn, writes, event, queue, since, running, loaded.app_version
                        )
            await self._deferred.write(conn, writes)

    async def _on_completed(
        self, event: RecordedEvent, completed: DeploymentCompleted, conn: asyncpg.Connection
    ) -> None:
        deployment_id, app_id = completed.deployment_id, completed.application_id
        with structlog_bound(deployment_id=deployment_id, application_id=app_id):
            loaded = await self._lock_and_load(conn, app_id)
            writes = Writes(observed=[completed])
            triggered = await queues.triggered_commit(conn, deployment_id)
            commit = running_commit_of(completed, triggered)
            if commit:
                writes.running.append((app_id, commit, deployment_id))
            queue = evolve_queue(loaded.queue, completed)
            log.info("deployment_completed", status=completed.status, next=next_to_plan(queue))
            # A success is the running commit now: the next plan is made against it.
            running = commit or loaded.running_commit
            await self._advance(
                conn, writes, event, queue, loaded.since, running, loaded.app_version
            )
            await self._deferred.write(conn, writes)

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
        stalled = await queues.stalled(self.store.pool, datetime.fromtimestamp(cutoff, UTC))
        advanced = 0
        for app_id in stalled:
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
            if not await queues.try_lock(conn, app_id):
                return 0
            loaded = await queues.load_queue(conn, app_id)
            if next_to_plan(loaded.queue) is None:
                return 0
            writes = Writes()
            await self._advance(
                conn, writes, None, loaded.queue, loaded.since, loaded.running_commit,
                loaded.app_version,
            )  # fmt: skip
            await self._deferred.flush(conn, [writes])
        return 1

    # Planning --------------------------------------------------------------------------

    async def _advance(
        self,
        conn: asyncpg.Connection,
        writes: Writes,
        cause: RecordedEvent | None,
        queue: AppQueue,
        since: Mapping[str, datetime | None],
        running: str,
        app_version: int,
    ) -> None:
        """Plan waiting deployments, oldest first, until one is planned or one must wait."""
        while (deployment_id := next_to_plan(queue)) is not None:
            with structlog_bound(deployment_id=deployment_id):
                try:
                    decided = await self._plan(
                        conn, writes, cause, deployment_id, since, running,
                        app_version=app_version,
                    )  # fmt: skip
                except _Transient as exc:
                    log.warning("plan_deferred", error=str(exc), retry_in_s=self.retry_interval_s)
                    writes.planning_since.append(deployment_id)
                    self._count("deferred")
                    return
            if isinstance(decided, DeploymentPlanned):
                return
            queue = evolve_queue(queue, decided)

    async def _plan(
        self,
        conn: asyncpg.Connection,
        writes: Writes,
        cause: RecordedEvent | None,
        deployment_id: str,
        since: Mapping[str, datetime | None],
        running: str,
        *,
        trigger: DeploymentTriggered | None = None,
        app_version: int,
    ) -> DeploymentPlanned | DeploymentPlanFailed:
        """Plan one deployment into `writes`: its plan, or why it failed.

        `trigger` is the deployment's trigger when the caller holds it (the event being
        handled, as the log stores it); otherwise it is read from the deployment's stream.
        `running` is the application's running commit ("" before its first success), and
        `app_version` its stream's version, both read under the application's lock.
        Raises `_Transient` when waiting may help and the deadline has not passed.
        """
        if trigger is None or trigger.deployment_id != deployment_id:
            trigger = await self._trigger_of(conn, writes, deployment_id)
        with _tracer.start_as_current_span("plan deployment") as span:
            span.set_attribute("slipway.deployment_id", deployment_id)
            try:
                plan, app, repository_id, config_text = await self.prepared.plan(
                    trigger, running, app_version
                )
            except (PlanError, Rejected, ConfigError) as exc:
                reason = str(exc)
            except Unavailable as exc:
                if not gave_up(since.get(deployment_id), self.clock(), self.give_up_after_s):
                    raise _Transient(exc) from exc
                waited = _for_people(self.give_up_after_s)
                reason = f"{_unavailable_reason(exc)} (gave up after retrying for {waited})"
            else:
                diff = plan.decision.diff
                event = planned(
                    trigger,
                    app,
                    plan,
                    repository_id=repository_id,
                    running_commit=running,
                    # Rendered redacted: Secret values masked, credential-looking ones too.
                    diff=diff.render() if diff is not None else "",
                    # A config may quote a webhook URL or a token: redacted before the log has it.
                    config_text=redact(config_text),
                )
                writes.decisions.append((self._envelope(cause, deployment_id), "planned", event))
                decision = plan.decision
                # At debug: a push touching 10,000 applications made this line a tenth of
                # the planner's CPU. `prepare` logs each batch's summary at info.
                log.debug(
                    "deployment_planned",
                    strategy=str(decision.strategy),
                    rule=str(decision.rule),
                    summary=decision.summary,
                    stages=[s.name for s in plan.stages if s.visible],
                    commit=trigger.commit_hash,
                    running_commit=running,
                )
                self._count(str(decision.strategy))
                return event
        # The reason quotes config files, tool and git errors: redacted before the log has it.
        failed = plan_failed(trigger, redact(reason))
        writes.decisions.append((self._envelope(cause, deployment_id), "plan_failed", failed))
        log.warning("deployment_plan_failed", reason=reason, commit=trigger.commit_hash)
        self._count("failed")
        return failed

    async def _trigger_of(
        self, conn: asyncpg.Connection, writes: Writes, deployment_id: str
    ) -> DeploymentTriggered:
        """The deployment's trigger, read from its stream (which `writes` then knows)."""
        stream = deployment_stream(deployment_id)
        history = await self.store.read_stream(stream, conn=conn)
        trigger = next((e.event for e in history if isinstance(e.event, DeploymentTriggered)), None)
        if trigger is None:
            # Only a trigger puts a deployment in the queue; its stream must start with it.
            raise RuntimeError(f"{stream} has no DeploymentTriggered event")
        state = PLANNING.initial_state()
        for recorded in history:
            state = PLANNING.evolve(state, recorded.event)
        last = history[-1]
        writes.known[stream] = Folded(state, last.stream_version, last.global_position)
        return trigger

    # Recording decisions (`writes.py` writes them) -------------------------------------

    def _queue(
        self, writes: Writes, cause: RecordedEvent, trigger: DeploymentTriggered, behind: str
    ) -> None:
        metadata = self._envelope(cause, trigger.deployment_id)
        writes.decisions.append((metadata, "queued", queued(trigger, behind)))
        log.info("deployment_queued", behind=behind)
        self._count("queued")

    def _envelope(self, cause: RecordedEvent | None, deployment_id: str) -> Metadata:
        return envelope(
            actor=CONSUMER_NAME,
            caused_by=cause,
            correlation_id=deployment_id,
            occurred_at=self.clock(),
        )

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self._counter is not None:
            self._counter.labels(outcome).inc()


def _for_people(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min"


def _unavailable_reason(exc: Unavailable) -> str:
    if isinstance(exc, GitError):
        return f"git is unavailable: {exc.reason}"
    return f"unavailable: {exc}"
