"""Runs one deployment while this replica holds its lease: fold, decide, append, do the work.

The loop, until the deployment completes, the lease is lost or the service stops:

1. fold the deployment's new events into its state (`shared.deployments.fold_history`;
   the first load starts from the stream's snapshot, `shared.snapshots`);
2. decide: `Start` for a planned deployment (with the application's timeout
   from its config), `StageFinished` when the running stage's work returned,
   `Advance` otherwise — and append what that gives, fenced by the lease and
   expecting the folded version (a conflict just means: read again);
3. keep the stage work `decider.work_of` names running (start it, or cancel
   it when the stage is no longer running: cancelled, skipped, timed out);
4. wait for the work to return, the next deadline (`decider.next_deadline`:
   a WAIT's end, a timeout), a poke (a request arrived), or the poll interval.

The loop itself, and what a step may raise (a conflict, a lost lease, an
outage, a bug), are `shared.leaserun.run_leased`'s, the analysis runner's too;
this module is the step (`step`), the wait (`wait`) and the clean-up (`close`).

Everything lives in the log, so a runner started on any replica after a crash
picks the deployment up where the log says it is: a WAIT waits only the time
it has left, completed stages are never run again, and the stage that was
running is run again from its start (Kubernetes stages are idempotent).

Tracing (DESIGN §11): a runner starts from a lease claim, not from a consumed
message, so it continues the trace recorded with the deployment's
`DeploymentPlanned` (or `DeploymentTriggered`) — the same one on every holder.
Each stage is a span `stage <NAME>` from its start to its completion (a new
holder opens its own span for the stage it resumes); its events are appended,
and its work runs, inside it, so Kubernetes calls and the analysis it asks for
are its children.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from structlog.contextvars import bound_contextvars

from services.executor.decider import (
    Abort,
    Advance,
    Command,
    Deployment,
    DeploymentStatus,
    StageFinished,
    StageStatus,
    Start,
    decide,
    next_deadline,
    work_of,
)
from services.executor.leases import Lease, Leases
from services.executor.stages import StageResult
from shared.config.stage_kinds import TIMED
from shared.deployments import INITIAL, fold_history
from shared.errors import ConfigError, Unavailable
from shared.eventlog import EventStore
from shared.eventlog.envelope import envelope
from shared.events.base import Event, NewEvent, RecordedEvent
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
    StageCompleted,
    StageStarted,
)
from shared.events.streams import deployment_stream
from shared.ids import new_event_id
from shared.leaserun import run_leased
from shared.logs import get_logger
from shared.redaction import redact
from shared.snapshots import read_state
from shared.stagelog import Severity, StageLogs
from shared.stream_folds import DEPLOYMENT
from shared.tracing import context_of

__all__ = ["DeploymentRunner", "StageWork", "TimeoutLoader"]

log = get_logger("slipway.executor.runner")
_tracer = trace.get_tracer("slipway.executor")

StageWork = Callable[[Deployment, str], Coroutine[Any, Any, StageResult]]
"""Runs the work of stage `stage_id` of the deployment (as folded when it started)."""
TimeoutLoader = Callable[[Deployment], Awaitable[float]]
"""The application's `spec.timeout` in seconds at the deployment's commit."""

OUTAGE_GRACE_S: Final = 300.0
"""How long a stage's work is run again while the database or the cluster is unreachable
before the outage fails the stage (a restart of either is waited out; a cluster gone for
good still ends the deployment)."""
INFO, SUCCESS, ERROR = Severity.INFO, Severity.SUCCESS, Severity.ERROR
# Never spin: even a deadline already past is looked at again only after this.
_MIN_WAIT_S: Final = 0.02
# The stream's head is read this many events at a time for its plan: the trigger, a queue
# or two, the plan.
_HEAD_PAGE: Final = 8


@dataclass
class _Work:
    stage_id: str
    task: asyncio.Task[StageResult]


class DeploymentRunner:
    """One deployment, run by the holder of its lease."""

    def __init__(
        self,
        *,
        lease: Lease,
        store: EventStore,
        leases: Leases,
        work: StageWork,
        load_timeout: TimeoutLoader,
        executor_name: str,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stage_logs: StageLogs | None = None,
        outage_grace_s: float = OUTAGE_GRACE_S,
    ) -> None:
        self.lease = lease
        self.outage_grace_s = outage_grace_s
        self.stage_logs = stage_logs
        self.store = store
        self.leases = leases
        self.work = work
        self.load_timeout = load_timeout
        self.executor_name = executor_name
        self.poll_s = poll_s
        self.clock = clock
        self.poke = asyncio.Event()
        self.lost = asyncio.Event()
        self.stream = deployment_stream(lease.deployment_id)
        self.completed = False
        self._work: _Work | None = None
        # Per stage: when (loop time) its work first met an outage it has not yet outlived.
        self._outage_since: dict[str, float] = {}
        # The deployment's trace, as recorded with its plan (None until the plan is read).
        self._trace: otel_context.Context | None = None
        self._trace_read = False
        # The deployment as folded at the last load (None: not loaded yet, or no events).
        self._folded: Deployment | None = None
        # The span of each stage running under this holder, from its start to its end.
        self._stage_spans: dict[str, trace.Span] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run until the deployment completes, the lease is lost, or `stop` is set."""
        with bound_contextvars(
            deployment_id=self.lease.deployment_id,
            application_id=self.lease.application_id,
            lease_token=self.lease.token,
        ):
            log.info("deployment_taken", holder=self.lease.holder)
            try:
                await run_leased(
                    self, leases=self.leases, lease=self.lease, stop=stop, what="deployment"
                )
            finally:
                # A completed deployment's end is `deployment_completed`'s line already.
                (log.debug if self.completed else log.info)(
                    "deployment_left",
                    completed=self.completed,
                    lease_lost=self.lost.is_set(),
                )

    # The lease holder's work (`shared.leaserun.LeasedWork`) -------------------------------

    @property
    def finished(self) -> bool:
        """Whether the deployment has completed."""
        return self.completed

    async def step(self) -> float | None:
        """Load, decide, append; start the stage work the state calls for. The seconds until
        something is due (None: step again at once, after appending)."""
        self.poke.clear()
        state = await self._load()
        if state.completed:
            await self.leases.mark_completed(self.lease.deployment_id)
            self.completed = True
            return None
        command = await self._command(state)
        events = decide(state, command, self.clock())
        if events:
            # A stage's lines are stored before the events that complete it (and the
            # runner's own lines about these events right after them, as one write).
            await self._flush_stage_logs()
            await self._append(state, events)
            await self._log_events(events)
            await self._flush_stage_logs()
        if isinstance(command, StageFinished):
            # Only once its report is in the log (or was stale): after a conflict
            # the same finished work is reported again, not run again.
            self._work = None
        if events:
            return None
        self._keep_working(state)
        deadline = next_deadline(state)
        if deadline is None:
            return self.poll_s
        return max(_MIN_WAIT_S, min(self.poll_s, (deadline - self.clock()).total_seconds()))

    async def close(self) -> None:
        """Stop the stage's work and its spans before the lease is released."""
        await self._drop_work()
        self._end_stage_spans()

    def abandon(self) -> None:
        """The lease is lost (or about to expire): stop the stage's side effect now, whatever
        the step waits for (a database that hangs, most likely). Cancelling the task kills
        its script's process group at once (services/executor/script.py)."""
        if self._work is not None:
            log.warning("stage_work_abandoned", stage_id=self._work.stage_id)
            self._work.task.cancel()

    async def _load(self) -> Deployment:
        """The deployment as the log says now. The first load reads it from its snapshot
        (`shared.snapshots`); each later one folds only the events after the state kept,
        so a step costs the events since the last step, however long the stream is. The
        log is append-only, so the state kept is always a prefix's: after a conflict the
        events another writer appended are simply the next tail."""
        if self._folded is None:
            read = await read_state(self.store, self.stream, DEPLOYMENT)
            self._folded = read.state
        else:
            tail = await self.store.read_stream(self.stream, from_version=self._folded.version + 1)
            self._folded = fold_history(self.lease.deployment_id, tail, self._folded)
        if not self._trace_read:
            self._trace, self._trace_read = await self._recorded_trace()
        return self._folded or INITIAL

    async def _recorded_trace(self) -> tuple[otel_context.Context | None, bool]:
        """The trace the deployment's plan (or else its trigger) was recorded in, read from
        the stream's head (the plan precedes every stage event), and whether the plan was
        there to read (if not, it is looked for again at the next load)."""
        triggered: RecordedEvent | None = None
        planned: RecordedEvent | None = None
        async for recorded in self.store.iter_stream(self.stream, page_size=_HEAD_PAGE):
            if isinstance(recorded.event, DeploymentTriggered) and triggered is None:
                triggered = recorded
            if isinstance(recorded.event, DeploymentPlanned):
                planned = recorded
                break
        return _traced(planned) or _traced(triggered), planned is not None

    async def _command(self, state: Deployment) -> Command:
        work = self._work
        if work is not None and work.task.done():
            try:
                result = work.task.result()
            except asyncio.CancelledError:
                self._work = None
                return Advance()
            except Unavailable as exc:
                # An outage (PostgreSQL or the Kubernetes API restarting) is not the stage's
                # failure: the loop waits a moment and runs the work again from its start
                # (Kubernetes stages are idempotent; ANALYSIS and WAIT resume from the log).
                self._work = None
                now = asyncio.get_running_loop().time()
                since = self._outage_since.setdefault(work.stage_id, now)
                if now - since < self.outage_grace_s:
                    raise
                result = StageResult(
                    StageStatus.FAILURE, f"unavailable for {now - since:.0f} s: {exc}"
                )
            except (
                Exception
            ) as exc:  # the top of a stage's work: a bug fails the stage, logged once
                log.exception("stage_work_crashed", stage_id=work.stage_id)
                result = StageResult(StageStatus.FAILURE, f"internal error: {exc!r}")
            self._outage_since.pop(work.stage_id, None)
            # The one way a stage's reason enters the log (and a deployment's, made of it):
            # it quotes tool, API and script output, so it is redacted here.
            return StageFinished(work.stage_id, result.status, redact(result.reason))
        if state.status is DeploymentStatus.PLANNED and state.cancel is None:
            try:
                timeout_s = await self.load_timeout(state)
            except ConfigError as exc:
                return Abort(redact(f"the application config does not load: {exc}"))
            return Start(timeout_s=timeout_s, executor=self.executor_name)
        return Advance()

    async def _append(self, state: Deployment, events: list[Event]) -> None:
        now = self.clock()
        new: list[NewEvent] = []
        # Spans that last just this append; never ended (so never exported) if it fails.
        brief: list[tuple[trace.Span, Event]] = []
        opened_before = set(self._stage_spans)
        for event in events:
            span = self._span_for(state, event)
            if span is None:
                span = self._brief_span(state, event)
                brief.append((span, event))
            metadata = envelope(
                # Who wrote it, and under which lease: the audit trail of the fencing.
                actor=f"executor:{self.lease.holder}#{self.lease.token}",
                correlation_id=state.deployment_id,
                occurred_at=now,
                context=trace.set_span_in_context(span),
            )
            new.append(NewEvent(event=event, event_id=new_event_id(), metadata=metadata))
        try:
            await self.leases.append_fenced(
                self.lease, self.stream, new, expected_version=state.version
            )
        except BaseException:
            # A stage span opened for a `StageStarted` that was not appended is dropped unended
            # (never exported): the next decision opens it again if the stage does start.
            for stage_id in set(self._stage_spans) - opened_before:
                del self._stage_spans[stage_id]
            raise
        for span, event in brief:
            if isinstance(event, StageCompleted):
                _close_stage(span, event)
            span.end()
        for event in events:
            if isinstance(event, StageCompleted) and event.stage_id in self._stage_spans:
                span = self._stage_spans.pop(event.stage_id)
                _close_stage(span, event)
                span.end()
        if any(isinstance(e, DeploymentCompleted) for e in events):
            self.completed = True

    # Tracing --------------------------------------------------------------------------------

    def _span_for(self, state: Deployment, event: Event) -> trace.Span | None:
        """The open stage span `event` belongs in (opened by `StageStarted`), if any."""
        if isinstance(event, StageStarted):
            return self._stage_span(state, event.stage_id)
        stage_id = getattr(event, "stage_id", None)
        if isinstance(stage_id, str):
            return self._stage_spans.get(stage_id)
        return None

    def _stage_span(self, state: Deployment, stage_id: str, *, resumed: bool = False) -> trace.Span:
        span = self._stage_spans.get(stage_id)
        if span is None:
            stage = state.stage(stage_id)
            span = _tracer.start_span(
                f"stage {stage.name if stage else stage_id}",
                context=self._trace or otel_context.Context(),
                attributes={
                    "slipway.deployment_id": state.deployment_id,
                    "slipway.application_id": state.application_id,
                    "slipway.stage_id": stage_id,
                    "slipway.stage_name": stage.name if stage else "",
                    "slipway.executor": self.lease.holder,
                    "slipway.resumed": resumed,
                },
            )
            self._stage_spans[stage_id] = span
        return span

    def _brief_span(self, state: Deployment, event: Event) -> trace.Span:
        """A span for an event outside a running stage: a deployment's own events, and the
        completion of a stage this holder never ran (skipped, cancelled before it started)."""
        attributes: dict[str, str] = {"slipway.deployment_id": state.deployment_id}
        if isinstance(event, StageCompleted):
            stage = state.stage(event.stage_id)
            name = f"stage {stage.name if stage else event.stage_id}"
            attributes["slipway.stage_id"] = event.stage_id
            attributes["slipway.stage_name"] = stage.name if stage else ""
        else:
            name = f"deployment {type(event).__struct_config__.tag}"
        return _tracer.start_span(
            name, context=self._trace or otel_context.Context(), attributes=attributes
        )

    def _end_stage_spans(self) -> None:
        """The stages still open when this holder leaves: the next holder opens its own."""
        for span in self._stage_spans.values():
            span.set_attribute("slipway.left_by_holder", True)
            span.end()
        self._stage_spans.clear()

    def _keep_working(self, state: Deployment) -> None:
        """Start the running stage's work, or cancel work whose stage is no longer running."""
        if self.lost.is_set():
            return  # state read before the lease was lost: not ours to act on any more
        stage = work_of(state)
        work = self._work
        if work is not None and (stage is None or stage.id != work.stage_id):
            log.info("stage_work_cancelled", stage_id=work.stage_id)
            work.task.cancel()
            self._work = None
        if stage is not None and self._work is None:
            # A stage this holder did not start (it took the deployment over) gets its span here.
            resumed = stage.id not in self._stage_spans
            # A fresh stage's start is `stage_started`'s line; a resumed one has no other.
            (log.info if resumed else log.debug)(
                "stage_work_started", stage_id=stage.id, stage=stage.name, resumed=resumed
            )
            span = self._stage_span(state, stage.id, resumed=resumed)
            # The task copies the current context: the stage's work runs in its span.
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                task = asyncio.create_task(self.work(state, stage.id), name=f"stage {stage.id}")
            finally:
                otel_context.detach(token)
            self._work = _Work(stage.id, task)

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Until `seconds` pass, a request (`poke`), the stage's work returns, or stop / lost."""
        waiters: list[asyncio.Future[object]] = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self.poke.wait()),
            asyncio.ensure_future(self.lost.wait()),
        ]
        if self._work is not None:
            waiters.append(asyncio.ensure_future(asyncio.shield(self._work.task)))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            # Retrieve the shielded task's outcome so it is never reported as unretrieved.
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _drop_work(self) -> None:
        if self._work is not None:
            self._work.task.cancel()
            with contextlib.suppress(BaseException):
                await self._work.task
            self._work = None

    async def _flush_stage_logs(self) -> None:
        if self.stage_logs is not None:
            await self.stage_logs.flush()

    async def _log_events(self, events: list[Event]) -> None:
        """The service log, and the stage log people read (a WAIT has no other lines)."""
        logs = self.stage_logs
        for event in events:
            match event:
                case StageStarted():
                    log.info("stage_started", stage_id=event.stage_id, stage=event.name)
                    if logs is not None and event.name in TIMED:
                        line = f"Stage {event.name} ({event.stage_id}) started"
                        await logs.write(self.lease.deployment_id, event.stage_id, INFO, line)
                case StageCompleted():
                    log.info(
                        "stage_completed",
                        stage_id=event.stage_id,
                        status=event.status,
                        reason=event.reason,
                    )
                    if logs is not None:
                        severity = SUCCESS if event.status == "SUCCESS" else ERROR
                        if event.status in ("SKIPPED", "EXITED"):
                            severity = INFO
                        line = f"{event.status}: {event.reason}" if event.reason else event.status
                        await logs.write(self.lease.deployment_id, event.stage_id, severity, line)
                case DeploymentCompleted():
                    log.info("deployment_completed", status=event.status, reason=event.reason)
                case _:  # the log has them; the service log keeps to stages and ends
                    log.debug("deployment_event", event_type=type(event).__name__)


def _traced(recorded: RecordedEvent | None) -> otel_context.Context | None:
    if recorded is not None and recorded.metadata.traceparent:
        return context_of(recorded.metadata)
    return None


def _close_stage(span: trace.Span, completed: StageCompleted) -> None:
    span.set_attribute("slipway.stage_status", completed.status)
    if completed.status == "FAILURE":
        span.set_status(Status(StatusCode.ERROR, completed.reason))
