"""The analysis service's pure core: which ticks are due, and when the analysis is over.

No I/O, no clock: the elapsed time is passed in. The record is the fold of
the analysis stream (`shared.analysis.record`); the verdict on each tick is
`shared.analysis.strategies` (so `slipway analysis rejudge` computes it
the same way).

- `due_ticks`: the ticks whose time has come and that are not measured yet,
  for every check still undecided. A Prometheus check catches up on ticks
  missed while no replica ran the analysis (their windows are in the past,
  and Prometheus keeps the past); an HTTP check runs only its latest due
  tick (a request cannot be sent in the past).
- `next_due_s`: when the next tick falls (to sleep until then).
- `conclusion`: `failure` as soon as one check failed (its reason names the
  check, the strategy and the numbers); `success` once every check passed its
  final tick (or, with no checks, once the duration has passed); else none.

And the events the runner appends, built here only:

- `started`: the one `AnalysisStarted` of a holder's run — the analysis' clock
  on a new analysis, a `resumed` marker with the first start's judge and
  duration after a restart or a takeover;
- `judge_ticks`: a batch of measured ticks, folded in and judged in order
  (`AnalysisMeasured`, then `AnalysisTickJudged`, per tick; a check that
  failed in the batch is not judged again);
- `concluded`: the one `AnalysisConcluded`.

Values that may quote secrets (check queries, reasons) arrive redacted in the
commands: redaction reads the process's secret registry, which is the shell's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from shared.analysis.judges import judge_named
from shared.analysis.record import (
    AnalysisRecord,
    CheckRecord,
    evolve,
    judge_tick,
    tick_at,
    tick_count,
)
from shared.analysis.strategies import TickVerdict
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisCheck,
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisStarted,
    AnalysisTickJudged,
)
from shared.events.vocabulary import Verdict
from shared.redaction import REASON_CHARS, clip

__all__ = [
    "Conclusion",
    "Due",
    "JudgedTick",
    "Start",
    "concluded",
    "conclusion",
    "due_ticks",
    "judge_ticks",
    "next_due_s",
    "started",
]


@dataclass(frozen=True)
class Due:
    """One check's tick that is due: which check, which tick, when, and whether it is the last."""

    key: str
    tick: int
    at_s: float
    final: bool


@dataclass(frozen=True)
class Conclusion:
    """How an analysis ends: its verdict and why."""

    verdict: Verdict
    reason: str


def _decided(check: CheckRecord) -> bool:
    last = check.last_judged
    return last is not None and last.outcome in ("pass", "fail")


def _next_tick(check: CheckRecord) -> int:
    return max(check.measured, default=0) + 1


def due_ticks(record: AnalysisRecord, elapsed_s: float) -> list[Due]:
    """The ticks of undecided checks that are due `elapsed_s` into the analysis."""
    duration = record.duration_s
    out: list[Due] = []
    for key, check in record.checks.items():
        if _decided(check):
            continue
        last = tick_count(check.check, duration)
        due = [
            Due(key, k, tick_at(check.check, k, duration), k >= last)
            for k in range(_next_tick(check), last + 1)
            if tick_at(check.check, k, duration) <= elapsed_s
        ]
        if check.check.kind == "http":
            due = due[-1:]
        out.extend(due)
    return out


def next_due_s(record: AnalysisRecord) -> float | None:
    """Seconds after the start at which the next tick of an undecided check falls."""
    duration = record.duration_s
    times = [
        tick_at(check.check, _next_tick(check), duration)
        for check in record.checks.values()
        if not _decided(check) and _next_tick(check) <= tick_count(check.check, duration)
    ]
    if not record.checks:
        return duration
    return min(times, default=None)


def conclusion(record: AnalysisRecord, elapsed_s: float) -> Conclusion | None:
    """The analysis's end once its checks decide it, or None while it runs on."""
    if record.concluded is not None or record.started is None:
        return None
    checks = list(record.checks.values())
    for check in checks:
        last = check.last_judged
        if last is not None and last.outcome == "fail":
            return Conclusion(Verdict.FAILURE, last.reason)
    if not checks:
        if elapsed_s >= record.duration_s:
            return Conclusion(
                Verdict.SUCCESS, f"no checks to run; waited the duration ({record.duration_s:g} s)"
            )
        return None
    if all(_decided(c) for c in checks):
        reasons = "; ".join(c.last_judged.reason for c in checks if c.last_judged is not None)
        return Conclusion(Verdict.SUCCESS, f"{len(checks)} check(s) passed: {reasons}")
    return None


# Events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """A holder takes the analysis up at `now`; what the configuration says, for a new one."""

    now: datetime
    analyzer: str
    judge: str = ""
    duration_s: float = 0.0
    checks: tuple[AnalysisCheck, ...] = ()
    """As recorded for people and judges (queries redacted), not as measured."""
    skipped_checks: tuple[str, ...] = ()
    previous_analysis_id: str = ""
    previous_started_at: datetime | None = None


def started(record: AnalysisRecord, start: Start) -> AnalysisStarted:
    """This run's `AnalysisStarted`: the clock's start, or a `resumed` marker (same clock)."""
    request = record.request
    assert request is not None, "an analysis starts from its request"
    first = record.started
    base = AnalysisStarted(
        analysis_id=request.analysis_id,
        deployment_id=request.deployment_id,
        stage_id=request.stage_id,
        started_at=start.now,
        application_id=request.application_id,
        analyzer=start.analyzer,
    )
    if first is not None:
        return msgspec.structs.replace(
            base,
            judge=first.judge,
            judge_version=first.judge_version,
            duration_s=first.duration_s,
            resumed=True,
        )
    judge = judge_named(start.judge)
    return msgspec.structs.replace(
        base,
        judge=judge.name,
        judge_version=judge.version,
        duration_s=start.duration_s,
        checks=start.checks,
        skipped_checks=start.skipped_checks,
        previous_analysis_id=start.previous_analysis_id,
        previous_started_at=start.previous_started_at,
    )


@dataclass(frozen=True)
class JudgedTick:
    """One tick of a batch: when it fell, what was measured, and the verdict on it."""

    due: Due
    measured: Sequence[AnalysisMeasured]
    verdict: TickVerdict


def judge_ticks(
    record: AnalysisRecord, due: Sequence[Due], measured: Sequence[Sequence[AnalysisMeasured]]
) -> tuple[list[Event], list[JudgedTick]]:
    """Fold each due tick's measurements into `record` and judge it, in order: the events
    to append, and the ticks judged. A check failed earlier in the batch is not judged again.

    `record` is updated in place (it is the runner's fold); its version is the shell's to
    move, once the events are appended.
    """
    first = record.started
    assert first is not None, "ticks are judged after the start"
    judge = judge_named(first.judge)
    events: list[Event] = []
    judged: list[JudgedTick] = []
    failed: set[str] = set()
    for tick, tick_measured in zip(due, measured, strict=True):
        if tick.key in failed:
            continue
        check = record.checks[tick.key]
        for m in tick_measured:
            evolve(record, m)
        verdict = judge_tick(record, check, tick.tick, judge)
        event = AnalysisTickJudged(
            analysis_id=first.analysis_id,
            check=tick.key,
            tick=tick.tick,
            at_s=tick.at_s,
            strategy=check.check.strategy,
            outcome=vocabulary.TickOutcome(verdict.outcome),
            reason=clip(verdict.reason, REASON_CHARS),
            judge=verdict.judge,
            judge_version=verdict.judge_version,
            final=tick.final,
            failures=verdict.failures,
            statistics=verdict.statistics,
        )
        evolve(record, event)
        events += [*tick_measured, event]
        judged.append(JudgedTick(tick, tick_measured, verdict))
        if verdict.outcome == "fail":
            failed.add(tick.key)
    return events, judged


def concluded(record: AnalysisRecord, verdict: Conclusion) -> AnalysisConcluded:
    """The one `AnalysisConcluded` (its reason redacted by the caller, clipped here)."""
    request = record.request
    assert request is not None, "an analysis concludes what was requested"
    first = record.started
    return AnalysisConcluded(
        analysis_id=request.analysis_id,
        deployment_id=request.deployment_id,
        stage_id=request.stage_id,
        verdict=verdict.verdict,
        reason=clip(verdict.reason, REASON_CHARS),
        judge=first.judge if first else "",
        judge_version=first.judge_version if first else "",
    )
