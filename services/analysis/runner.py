"""Runs one analysis while this replica holds its lease: fold, measure what is due, judge, append.

The loop, until the analysis concludes, the lease is lost or the service stops:

1. read `analysis-<id>` and fold it (`shared.analysis.record.fold`); a
   concluded analysis closes its lease and ends;
2. the first time round, append `AnalysisStarted` — the clock's start on a
   new analysis, a `resumed` marker (with the same clock) after a restart or
   a takeover, so the time already spent counts;
3. if the deployment's `StageCompleted` for the stage is in its stream (the
   stage was cancelled, skipped or timed out), conclude `skipped`;
4. measure every due tick (`decider.due_ticks`), judge each from the record
   with the new measurements folded in, and append the measurements, the
   tick verdicts and — when `decider.conclusion` says so — the one
   `AnalysisConcluded`, in one append fenced by the lease;
5. explain each tick in the deployment's stage log, then sleep until the
   next tick (or the poll interval, to notice a cancel).

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

from services.analysis.decider import Conclusion, Due, conclusion, due_ticks, next_due_s
from services.analysis.leases import Lease, LeaseLost, Leases, Previous
from shared.analysis.checks import CheckPlan
from shared.analysis.judges import SequentialJudge, judge_named
from shared.analysis.record import AnalysisRecord, evolve, fold, judge_tick
from shared.analysis.strategies import TickVerdict, finite_values
from shared.errors import ConcurrencyConflict, ConfigError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import Event, Metadata, NewEvent
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisRequested,
    AnalysisStarted,
    AnalysisTickJudged,
    StageCompleted,
)
from shared.ids import new_event_id
from shared.logs import get_logger
from shared.redaction import REASON_CHARS, clip, redact
from shared.stagelog import StageLogger, StageLogs
from shared.streams import stream_id
from shared.tracing import context_of, current_trace_headers

__all__ = ["AnalysisRunner", "Measurer", "Setup", "SetupLoader"]

log = get_logger("slipway.analysis.runner")
_tracer = trace.get_tracer("slipway.analysis")

_RETRY_S: Final = 1.0
_CRASH_RETRY_S: Final = 5.0
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
    async def measure(
        self,
        setup: Setup,
        plan: CheckPlan,
        due: Due,
        *,
        started_at: datetime,
        previous: Previous | None,
        analysis_id: str,
    ) -> list[AnalysisMeasured]: ...


class AnalysisRunner:
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
        self.stream = stream_id("analysis", lease.analysis_id)
        self.log: StageLogger = stage_logs.for_stage(lease.deployment_id, lease.stage_id)
        self.lost = asyncio.Event()
        self.concluded = False
        self._announced = False
        self._setup: Setup | None = None
        self._stepping: asyncio.Task[float | None] | None = None
        # The trace `AnalysisRequested` was recorded in (None until it is read).
        self._trace: otel_context.Context | None = None

    @property
    def actor(self) -> str:
        return f"analysis:{self.lease.holder}#{self.lease.token}"

    async def run(self, stop: asyncio.Event) -> None:
        with bound_contextvars(
            analysis_id=self.lease.analysis_id,
            deployment_id=self.lease.deployment_id,
            lease_token=self.lease.token,
        ):
            log.info("analysis_taken", holder=self.lease.holder)
            try:
                async with self.leases.held(
                    self.lease,
                    stop=stop,
                    lost=self.lost,
                    finished=lambda: self.concluded,
                    abandon=self._abandon_step,
                ):
                    await self._loop(stop)
            finally:
                log.info("analysis_left", concluded=self.concluded, lost=self.lost.is_set())

    def _abandon_step(self) -> None:
        """The lease is lost (or about to expire): stop the step (a measurement, a tick) now,
        whatever it waits for."""
        if self._stepping is not None:
            self._stepping.cancel()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self.lost.is_set():
            # Its own task, so the lease's watchdog can stop it (`_abandon_step`).
            self._stepping = asyncio.create_task(self._step(), name="analysis step")
            try:
                wait = await self._stepping
            except asyncio.CancelledError:
                runner = asyncio.current_task()
                if runner is not None and runner.cancelling():
                    raise  # the runner itself is cancelled (the service stops)
                return  # the watchdog stopped the step: the lease is lost
            except ConcurrencyConflict:
                continue
            except LeaseLost as exc:
                log.warning("lease_lost", reason=str(exc))
                self.lost.set()
                return
            except Unavailable as exc:
                log.warning("analysis_step_unavailable", error=str(exc), retry_in_s=_RETRY_S)
                wait = _RETRY_S
            except Exception:  # the top of the runner's loop: a bug is logged, then retried
                log.exception("analysis_step_crashed", retry_in_s=_CRASH_RETRY_S)
                wait = _CRASH_RETRY_S
            if self.concluded:
                return
            if wait is not None:
                await self._sleep(stop, wait)

    async def _step(self) -> float | None:
        """One pass; the seconds to wait before the next (None: go on at once)."""
        history = await self.store.read_stream(self.stream)
        if self._trace is None:
            requested = next((e for e in history if isinstance(e.event, AnalysisRequested)), None)
            if requested is not None:
                self._trace = context_of(requested.metadata)
        record = fold((e.stream_version, e.event) for e in history)
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
                await self._conclude(record, Conclusion("failure", f"cannot analyse: {exc}"))
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
                    "skipped",
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
            judge = judge_named(setup.judge)
            previous = None
            if any(p.check.strategy == "PREVIOUS" for p in setup.plans.values()):
                previous = await self.leases.previous(request.application_id, request.analysis_id)
            started = AnalysisStarted(
                analysis_id=request.analysis_id,
                deployment_id=request.deployment_id,
                stage_id=request.stage_id,
                started_at=now,
                application_id=request.application_id,
                analyzer=self.actor,
                judge=judge.name,
                judge_version=judge.version,
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
            started = AnalysisStarted(
                analysis_id=request.analysis_id,
                deployment_id=request.deployment_id,
                stage_id=request.stage_id,
                started_at=now,
                application_id=request.application_id,
                analyzer=self.actor,
                judge=first.judge,
                judge_version=first.judge_version,
                duration_s=first.duration_s,
                resumed=True,
            )
        await self._append(record, [started])
        self._announced = True
        if first is None:
            await self.log.info(_start_line(started, self.lease.holder))
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
        judge = judge_named(started.judge)
        measured_lists = await asyncio.gather(
            *(
                self._measure(setup, d, started.started_at, previous, started.analysis_id)
                for d in due
            )
        )
        events: list[Event] = []
        lines: list[tuple[bool, str]] = []
        failed: set[str] = set()
        for d, measured in zip(due, measured_lists, strict=True):
            if d.key in failed:
                continue  # the check failed at an earlier tick of this batch
            check = record.checks[d.key]
            for m in measured:
                evolve(record, m)
            verdict = judge_tick(record, check, d.tick, judge)
            judged = _judged_event(started.analysis_id, d, check.check.strategy, verdict)
            evolve(record, judged)
            events += [*measured, judged]
            lines.append((verdict.outcome == "fail", _tick_line(d, measured, verdict)))
            if verdict.outcome == "fail":
                failed.add(d.key)
        if failed:
            trace.get_current_span().set_attribute("slipway.failed_checks", sorted(failed))
        await self._append(record, events)
        record.version += len(events)
        for is_error, line in lines:
            await (self.log.error(line) if is_error else self.log.info(line))
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

    def _concluded_event(self, record: AnalysisRecord, verdict: Conclusion) -> AnalysisConcluded:
        started = record.started
        request = record.request
        assert request is not None
        return AnalysisConcluded(
            analysis_id=request.analysis_id,
            deployment_id=request.deployment_id,
            stage_id=request.stage_id,
            verdict=verdict.verdict,
            reason=clip(redact(verdict.reason), REASON_CHARS),
            judge=started.judge if started else "",
            judge_version=started.judge_version if started else "",
        )

    async def _conclude(self, record: AnalysisRecord, verdict: Conclusion) -> None:
        with self._span("analysis conclude"):
            await self._record_conclusion(record, verdict)

    async def _record_conclusion(self, record: AnalysisRecord, verdict: Conclusion) -> None:
        concluded = self._concluded_event(record, verdict)
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
        history = await self.store.read_stream(stream_id("deployment", request.deployment_id))
        return next(
            (
                e.event
                for e in history
                if isinstance(e.event, StageCompleted) and e.event.stage_id == request.stage_id
            ),
            None,
        )

    async def _append(self, record: AnalysisRecord, events: list[Event]) -> None:
        context = current_trace_headers()
        metadata = Metadata(
            correlation_id=self.lease.deployment_id,
            traceparent=context.get("traceparent"),
            tracestate=context.get("tracestate"),
            actor=self.actor,
            occurred_at=self.clock(),
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


def _judged_event(
    analysis_id: str, due: Due, strategy: str, verdict: TickVerdict
) -> AnalysisTickJudged:
    return AnalysisTickJudged(
        analysis_id=analysis_id,
        check=due.key,
        tick=due.tick,
        at_s=due.at_s,
        strategy=strategy,
        outcome=verdict.outcome,
        reason=clip(verdict.reason, REASON_CHARS),
        judge=verdict.judge,
        judge_version=verdict.judge_version,
        final=due.final,
        failures=verdict.failures,
        statistics=verdict.statistics,
    )


_COMPARISONS: Final = frozenset({"PREVIOUS", "CANARY_BASELINE", "CANARY_PRIMARY"})


def too_short_to_fail(started: AnalysisStarted) -> list[str]:
    """Warnings for comparison checks the sequential judge cannot fail within the duration.

    Its batches are minutes long (so they are nearly independent), and it needs
    three of them: a 2-minute stage's comparisons can only pass. Say so up front
    rather than let a short analysis look like a guarantee.
    """
    judge = judge_named(started.judge)
    if not isinstance(judge, SequentialJudge):
        return []
    warnings = []
    for check in started.checks:
        if check.strategy not in _COMPARISONS:
            continue
        earliest = judge.earliest_failure_s(check.interval_s)
        if earliest > started.duration_s:
            warnings.append(
                f"Warning: {check.key} ({check.strategy}) cannot fail within "
                f"{started.duration_s:g} s with judge sequential: it needs 3 batches, the first "
                f"chance is at {earliest:g} s; use a longer duration or `judge: pipecd`"
            )
    return warnings


def _start_line(started: AnalysisStarted, holder: str) -> str:
    checks = ", ".join(
        f"{c.key} ({c.strategy} every {c.interval_s:g} s, failureLimit {c.failure_limit})"
        for c in started.checks
    )
    return (
        f"Analysis {started.analysis_id} started by {holder} for {started.duration_s:g} s "
        f"with judge {started.judge} {started.judge_version}: {checks or 'no checks'}"
    )


def _measurement_text(m: AnalysisMeasured) -> str:
    who = f"{m.variant} " if m.variant else ""
    # A multi-line PromQL template reads best in a log line as one line.
    query = "`" + " ".join(m.query.split()) + "`"
    if m.error:
        return f"{who}{query}: error: {m.error}"
    if m.status_code:
        return f"{m.query}: HTTP {m.status_code}"
    values = finite_values(m)
    if not values:
        dropped = f" ({len(m.values)} non-numeric)" if m.values else ""
        return f"{who}{query}: no data{dropped}"
    return f"{who}{query}: {len(values)} sample(s), min {min(values):.6g}, max {max(values):.6g}"


def _tick_line(due: Due, measured: list[AnalysisMeasured], verdict: TickVerdict) -> str:
    final = " (final)" if due.final else ""
    sent = "; ".join(_measurement_text(m) for m in measured)
    return (
        f"[{due.key}] tick {due.tick} at {due.at_s:g} s{final}: {sent} "
        f"→ {verdict.outcome}: {verdict.reason}"
    )
