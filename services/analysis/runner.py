"""Runs one analysis while this replica holds its lease: fold, measure what is due, judge, append.

The loop, until the analysis concludes, the lease is lost or the service stops:

1. read `analysis-<id>` and fold it (`shared.analysis.record.fold`): the
   events after the record kept from the last step, all of them the first
   time and after a step that failed; a concluded analysis closes its lease
   and ends;
2. the first time round, append `AnalysisStarted` (`decider.started`) — the
   clock's start on a new analysis, a `resumed` marker (with the same clock)
   after a restart or a takeover, so the time already spent counts;
3. if the deployment's `StageCompleted` for the stage is in its stream (the
   stage was cancelled, skipped or timed out), conclude `skipped` (each step
   reads only the deployment's events after those read before);
4. measure every due tick (`decider.due_ticks`), judge each from the record
   with the new measurements folded in (`decider.judge_ticks`), and append the
   measurements and the tick verdicts, fenced by the lease; then — when
   `decider.conclusion` says so — the one `AnalysisConcluded`
   (`decider.concluded`);
5. explain each tick in the deployment's stage log, then sleep until the
   next tick (or the poll interval, to notice a cancel).

The loop and what a step may raise are `shared.leaserun.run_leased`'s, the
executor's runner's too; this module is the step, the wait and the clean-up.

Tracing (DESIGN §11): the runner starts from a lease claim, so it continues
the trace recorded with `AnalysisRequested` (appended inside the executor's
ANALYSIS stage span): a span for the start, one per batch of ticks (the
Prometheus queries and HTTP checks its children) and one for the conclusion,
each around the append it makes, so the analysis' events carry that trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Final, Protocol

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from structlog.contextvars import bound_contextvars

from services.analysis.decider import (
    Conclusion,
    Due,
    Start,
    conclusion,
    due_ticks,
    judge_ticks,
    next_due_s,
)
from services.analysis.decider import concluded as decide_concluded
from services.analysis.decider import started as decide_started
from services.analysis.leases import Lease, Leases, Previous
from services.analysis.lines import start_line, tick_line, too_short_to_fail
from shared.analysis.checks import CheckPlan
from shared.analysis.record import AnalysisRecord, evolve, fold
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.eventlog.envelope import envelope
from shared.events.base import Event, NewEvent
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisRequested,
    StageCompleted,
)
from shared.events.streams import analysis_stream, deployment_stream
from shared.events.vocabulary import Verdict
from shared.ids import new_event_id
from shared.leaserun import run_leased
from shared.logs import get_logger
from shared.redaction import redact
from shared.stagelog import StageLogger, StageLogs
from shared.tracing import context_of

# `too_short_to_fail` is `lines`', re-exported where callers look.
__all__ = ["AnalysisRunner", "Measurer", "Setup", "SetupLoader", "too_short_to_fail"]

log = get_logger("slipway.analysis.runner")
_tracer = trace.get_tracer("slipway.analysis")

_MIN_WAIT_S: Final = 0.02


class Setup(Protocol):
    """What measuring an analysis needs beyond its record (loaded from git and config)."""

    plans: dict[str, CheckPlan]
    skipped: list[str]
    judge: str
    duration_s: float


SetupLoader = Callable[[AnalysisRequested], Awaitable[Setup]]
"""Resolves a request's checks; `ConfigError` when they cannot be (the analysis fails)."""


class Measurer(Protocol):
    """What takes a check's measurements for a tick (Prometheus or HTTP, or a test's)."""

    async def measure(
        self,
        setup: Setup,
        plan: CheckPlan,
        due: Due,
        *,
        started_at: datetime,
        previous: Previous | None,
        analysis_id: str,
    ) -> list[AnalysisMeasured]:
        """Measure `plan`'s queries for tick `due` of the analysis `setup` describes."""
        ...


class AnalysisRunner:
    """Measure `plan`'s queries for tick `due` of the analysis `setup` describes."""

    """Measure `plan`'s queries for tick `due` of the analysis `setup` describes."""

    """One analysis, run by the holder of its lease."""

    def __init__(
        self,
        *,
        lease: Lease,
        store: EventStore,
        leases: Leases,
        stage_logs: StageLogs,
        load_setup: SetupLoader,
        measurer: Measurer,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.lease = lease
        self.store = store
        self.leases = leases
        self.load_setup = load_setup
        self.measurer = measurer
        self.poll_s = poll_s
        self.clock = clock
        self.stream = analysis_stream(lease.analysis_id)
        self.log: StageLogger = stage_logs.for_stage(lease.deployment_id, lease.stage_id)
        self.lost = asyncio.Event()
        self.concluded = False
        self._announced = False
        self._setup: Setup | None = None
        # The trace `AnalysisRequested` was recorded in (None until it is read).
        self._trace: otel_context.Context | None = None
        # The record as folded by the last step that finished (None: read the stream whole).
        self._record: AnalysisRecord | None = None
        # The deployment stream's version read up to, and the stage's completion found there.
        self._deployment_read = -1
        self._stage_end: StageCompleted | None = None

    @property
    def actor(self) -> str:
        """Who appends this run's events: the replica and its lease token."""
        return f"analysis:{self.lease.holder}#{self.lease.token}"

    async def run(self, stop: asyncio.Event) -> None:
        """Run the analysis to its conclusion, or until stopped or the lease is lost."""
        with bound_contextvars(
            analysis_id=self.lease.analysis_id,
            deployment_id=self.lease.deployment_id,
            lease_token=self.lease.token,
        ):
            log.info("analysis_taken", holder=self.lease.holder)
            try:
                await run_leased(
                    self, leases=self.leases, lease=self.lease, stop=stop, what="analysis"
                )
            finally:
                log.info("analysis_left", concluded=self.concluded, lost=self.lost.is_set())

    # The lease holder's work (`shared.leaserun.LeasedWork`) -------------------------------

    @property
    def finished(self) -> bool:
        """Whether the analysis has concluded."""
        return self.concluded

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep `seconds`, waking early when `stop` is set."""
        await self._sleep(stop, seconds)

    async def close(self) -> None:
        """Nothing of its own outlives a step: measurements are awaited within it."""

    def abandon(self) -> None:
        """Nothing beyond the step, which the lease's watchdog cancels itself."""

    async def step(self) -> float | None:
        """One pass; the seconds to wait before the next (None: go on at once)."""
        try:
            return await self._step()
        except BaseException:
            # A step that did not finish may leave the record ahead of the log (ticks judged
            # and folded, not appended): the next step reads the stream again from its start.
            self._record = None
            raise

    async def _load(self) -> AnalysisRecord:
        """The record as the log says now: the events after the record kept (the first time,
        and after a failed step, all of them), folded into it in place."""
        record = self._record
        first = -1 if record is None else record.version
        tail = await self.store.read_stream(self.stream, from_version=first + 1)
        if self._trace is None:
            requested = next((e for e in tail if isinstance(e.event, AnalysisRequested)), None)
            if requested is not None:
                self._trace = context_of(requested.metadata)
        if record is None:
            record = fold((e.stream_version, e.event) for e in tail)
        else:
            for recorded in tail:
                evolve(record, recorded.event)
                record.version = recorded.stream_version
        self._record = record
        return record

    async def _step(self) -> float | None:
        record = await self._load()
        if record.concluded is not None:
            await self.leases.mark_concluded(self.lease.analysis_id, record.concluded.verdict)
            self.concluded = True
            return None
        request = record.request
        if request is None:
            return self.poll_s  # registered from NATS before we can read it: look again
        if self._setup is None:
            try:
                self._setup = await self.load_setup(request)
            except ConfigError as exc:
                await self._conclude(record, Conclusion(Verdict.FAILURE, f"cannot analyse: {exc}"))
                return None
        setup = self._setup
        now = self.clock()
        if not self._announced:
            name = "analysis resume" if record.started is not None else "analysis start"
            with self._span(name):
                await self._announce(record, request, setup, now)
            return None
        assert record.started is not None
        elapsed = (now - record.started.started_at).total_seconds()
        ended = await self._stage_ended(request)
        if ended is not None:
            why = f": {ended.reason}" if ended.reason else ""
            await self._conclude(
                record,
                Conclusion(
                    Verdict.SKIPPED,
                    f"the stage ended {ended.status}{why} after {elapsed:.1f} s; analysis stopped",
                ),
            )
            return None
        due = due_ticks(record, elapsed)
        if due:
            with self._span("analysis tick") as span:
                span.set_attribute("slipway.ticks", [f"{d.key}#{d.tick}" for d in due])
                await self._ticks(record, setup, due, elapsed)
            return None
        verdict = conclusion(record, elapsed)
        if verdict is not None:
            await self._conclude(record, verdict)
            return None
        next_s = next_due_s(record)
        if next_s is None:
            return self.poll_s
        return max(_MIN_WAIT_S, min(self.poll_s, next_s - elapsed))

    # Starting and resuming ----------------------------------------------------------------

    async def _announce(
        self, record: AnalysisRecord, request: AnalysisRequested, setup: Setup, now: datetime
    ) -> None:
        first = record.started
        if first is None:
            previous = None
            if any(p.check.strategy == "PREVIOUS" for p in setup.plans.values()):
                previous = await self.leases.previous(request.application_id, request.analysis_id)
            start = Start(
                now=now,
                analyzer=self.actor,
                judge=setup.judge,
                duration_s=setup.duration_s,
                # Recorded for people and judges, not for measuring (that reads the config):
                # a token in a check's URL stays out of the log.
                checks=tuple(
                    msgspec.structs.replace(p.check, query=redact(p.check.query))
                    for p in setup.plans.values()
                ),
                skipped_checks=tuple(redact(skipped) for skipped in setup.skipped),
                previous_analysis_id=previous.analysis_id if previous else "",
                previous_started_at=previous.started_at if previous else None,
            )
        else:
            start = Start(now=now, analyzer=self.actor)
        started = decide_started(record, start)
        await self._append(record, [started])
        self._announced = True
        if first is None:
            await self.log.info(start_line(started, self.lease.holder))
            for warning in too_short_to_fail(started):
                await self.log.info(warning)
            for skipped in setup.skipped:
                await self.log.info(f"Not run: {skipped}")
            if started.previous_analysis_id:
                await self.log.info(
                    f"PREVIOUS compares with analysis {started.previous_analysis_id}, "
                    f"started {started.previous_started_at:%Y-%m-%d %H:%M:%S} UTC: the same "
                    "query over the same offsets from its start"
                )
        else:
            spent = (now - first.started_at).total_seconds()
            await self.log.info(
                f"Analysis resumed by {self.lease.holder}: {spent:.1f} s of "
                f"{first.duration_s:g} s already spent (started {first.started_at:%H:%M:%S} UTC)"
            )

    # Ticks --------------------------------------------------------------------------------

    async def _ticks(
        self, record: AnalysisRecord, setup: Setup, due: list[Due], elapsed: float
    ) -> None:
        started = record.started
        assert started is not None
        previous = (
            Previous(started.previous_analysis_id, started.previous_started_at)
            if started.previous_started_at is not None
            else None
        )
        measured_lists = await asyncio.gather(
            *(
                self._measure(setup, d, started.started_at, previous, started.analysis_id)
                for d in due
            )
        )
        events, judged = judge_ticks(record, due, measured_lists)
        failed = sorted({t.due.key for t in judged if t.verdict.outcome == "fail"})
        if failed:
            trace.get_current_span().set_attribute("slipway.failed_checks", failed)
        await self._append(record, events)
        record.version += len(events)
        for tick in judged:
            line = tick_line(tick.due, list(tick.measured), tick.verdict)
            await (self.log.error(line) if tick.verdict.outcome == "fail" else self.log.info(line))
        # The verdict in an append of its own, after the tick lines: the executor acts on it
        # at once, and its own line should come after ours in the stage log.
        verdict_now = conclusion(record, elapsed)
        if verdict_now is not None:
            await self._record_conclusion(record, verdict_now)

    async def _measure(
        self,
        setup: Setup,
        due: Due,
        started_at: datetime,
        previous: Previous | None,
        analysis_id: str,
    ) -> list[AnalysisMeasured]:
        plan = setup.plans.get(due.key)
        if plan is None:
            return [
                AnalysisMeasured(
                    analysis_id=analysis_id,
                    check=due.key,
                    tick=due.tick,
                    error="the check is no longer in the stage's configuration",
                    measured_at=self.clock(),
                )
            ]
        return await self.measurer.measure(
            setup, plan, due, started_at=started_at, previous=previous, analysis_id=analysis_id
        )

    # Concluding ---------------------------------------------------------------------------

    async def _conclude(self, record: AnalysisRecord, verdict: Conclusion) -> None:
        with self._span("analysis conclude"):
            await self._record_conclusion(record, verdict)

    async def _record_conclusion(self, record: AnalysisRecord, verdict: Conclusion) -> None:
        # Its reason quotes config, provider and tool errors: redacted before the log has it.
        concluded = decide_concluded(record, Conclusion(verdict.verdict, redact(verdict.reason)))
        span = trace.get_current_span()
        span.set_attribute("slipway.verdict", concluded.verdict)
        if concluded.verdict == "failure":
            span.set_status(Status(StatusCode.ERROR, concluded.reason))
        await self._append(record, [concluded])
        await self._log_conclusion(concluded)
        self.concluded = True

    async def _log_conclusion(self, concluded: AnalysisConcluded) -> None:
        line = f"Analysis {concluded.verdict}: {concluded.reason}"
        log.info("analysis_concluded", verdict=concluded.verdict, reason=concluded.reason)
        if concluded.verdict == "success":
            await self.log.success(line)
        elif concluded.verdict == "failure":
            await self.log.error(line)
        else:
            await self.log.info(line)

    # Plumbing -----------------------------------------------------------------------------

    def _span(self, name: str) -> AbstractContextManager[trace.Span]:
        """A span continuing the request's trace; what it appends carries it."""
        return _tracer.start_as_current_span(
            name,
            context=self._trace or otel_context.Context(),
            attributes={
                "slipway.analysis_id": self.lease.analysis_id,
                "slipway.deployment_id": self.lease.deployment_id,
                "slipway.stage_id": self.lease.stage_id,
                "slipway.analyzer": self.lease.holder,
            },
        )

    async def _stage_ended(self, request: AnalysisRequested) -> StageCompleted | None:
        """The stage's completion, once the deployment's stream has it: each tick reads only
        the events after those read before (the stream of a long pipeline is long)."""
        if self._stage_end is None:
            tail = await self.store.read_stream(
                deployment_stream(request.deployment_id), from_version=self._deployment_read + 1
            )
            if tail:
                self._deployment_read = tail[-1].stream_version
            self._stage_end = next(
                (
                    e.event
                    for e in tail
                    if isinstance(e.event, StageCompleted) and e.event.stage_id == request.stage_id
                ),
                None,
            )
        return self._stage_end

    async def _append(self, record: AnalysisRecord, events: list[Event]) -> None:
        metadata = envelope(
            actor=self.actor, correlation_id=self.lease.deployment_id, occurred_at=self.clock()
        )
        new = [NewEvent(event=e, event_id=new_event_id(), metadata=metadata) for e in events]
        await self.leases.append_fenced(
            self.lease, self.stream, new, expected_version=record.version
        )

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.lost.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
