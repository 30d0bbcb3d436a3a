"""An analysis as its stream (`analysis-<id>`) records it: the fold, the tick schedule, and
recomputing its verdicts.

Both the analysis service (to resume, and to judge a tick from what it has
just recorded) and `slipway analysis rejudge` read an analysis through here,
so the live verdicts and the recomputed ones are computed by the same code
from the same events.

The schedule: the first `AnalysisStarted` starts the clock. A check with
interval `i` has ticks `k = 1, 2, …` at `min(k·i, duration)` seconds, the last
one (`final`) at the stage's `duration`; each tick's window is the interval
before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from shared.analysis.judges import Judge
from shared.analysis.strategies import TickInput, TickVerdict, evaluate
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisCheck,
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisRequested,
    AnalysisStarted,
    AnalysisTickJudged,
)

__all__ = [
    "AnalysisRecord",
    "CheckRecord",
    "Rejudged",
    "fold",
    "rejudge",
    "since_previous_tick",
    "tick_at",
    "tick_count",
    "tick_inputs",
]


def tick_count(check: AnalysisCheck, duration_s: float) -> int:
    """How many ticks the check has over the stage's duration (the last at `duration`)."""
    if duration_s <= 0:
        return 0
    if check.interval_s <= 0:
        return 1
    return max(1, math.ceil(duration_s / check.interval_s - 1e-9))


def tick_at(check: AnalysisCheck, tick: int, duration_s: float) -> float:
    """Seconds after the start at which tick `tick` (1-based) is measured."""
    if check.interval_s <= 0:
        return duration_s
    return min(tick * check.interval_s, duration_s)


def since_previous_tick(check: AnalysisCheck, tick: int, duration_s: float) -> float:
    """Seconds from the tick before `tick` (or the start) to it: the window whose counts
    a ratio check's tick records (`shared.analysis.ratio_query`), so that the ticks' count
    windows never overlap, not even the last, short one at the duration."""
    before = tick_at(check, tick - 1, duration_s) if tick > 1 else 0.0
    return tick_at(check, tick, duration_s) - before


@dataclass
class CheckRecord:
    """One check's measurements and verdicts so far, by tick."""

    check: AnalysisCheck
    measured: dict[int, dict[str, AnalysisMeasured]] = field(default_factory=dict)
    """tick → role (`""`, `experiment`, `control`) → measurement."""
    judged: dict[int, AnalysisTickJudged] = field(default_factory=dict)

    @property
    def last_judged(self) -> AnalysisTickJudged | None:
        """The verdict of the latest judged tick (None before the first)."""
        return self.judged[max(self.judged)] if self.judged else None


@dataclass
class AnalysisRecord:
    """An analysis as its stream tells it: the request, the start, every check's record."""

    analysis_id: str = ""
    version: int = -1
    request: AnalysisRequested | None = None
    started: AnalysisStarted | None = None
    """The first start: the clock, the checks, the judge."""
    starts: list[AnalysisStarted] = field(default_factory=list)
    checks: dict[str, CheckRecord] = field(default_factory=dict)
    concluded: AnalysisConcluded | None = None

    @property
    def duration_s(self) -> float:
        """The analysis' length in seconds, once started (0 before)."""
        return self.started.duration_s if self.started is not None else 0.0

    @property
    def has_previous(self) -> bool:
        """Whether a previous deployment was found to compare with (PREVIOUS checks)."""
        return self.started is not None and self.started.previous_started_at is not None


def evolve(record: AnalysisRecord, event: Event) -> AnalysisRecord:
    """Apply one event (in place: the record is the fold's private accumulator)."""
    match event:
        case AnalysisRequested():
            record.request = event
            record.analysis_id = event.analysis_id
        case AnalysisStarted():
            record.starts.append(event)
            if record.started is None:
                record.started = event
                record.checks = {c.key: CheckRecord(c) for c in event.checks}
        case AnalysisMeasured():
            check = record.checks.get(event.check)
            if check is not None:
                check.measured.setdefault(event.tick, {})[event.role] = event
        case AnalysisTickJudged():
            check = record.checks.get(event.check)
            if check is not None:
                check.judged[event.tick] = event
        case AnalysisConcluded():
            if record.concluded is None:  # the first verdict is the verdict
                record.concluded = event
        case _:
            pass
    return record


def fold(events: Iterable[tuple[int, Event]]) -> AnalysisRecord:
    """The record of a stream, from its (stream_version, event) pairs."""
    record = AnalysisRecord()
    for version, event in events:
        evolve(record, event)
        record.version = version
    return record


_SIDES: Final = frozenset({"", "experiment", "control"})


def tick_inputs(check: CheckRecord, duration_s: float, upto: int) -> list[TickInput]:
    """The recorded ticks of `check` up to tick `upto`, in order (ticks never measured —
    missed while no replica ran the analysis — are simply absent)."""
    last = tick_count(check.check, duration_s)
    inputs = []
    for tick in sorted(t for t in check.measured if t <= upto):
        roles = check.measured[tick]
        inputs.append(
            TickInput(
                tick=tick,
                at_s=tick_at(check.check, tick, duration_s),
                final=tick >= last,
                single=roles.get(""),
                experiment=roles.get("experiment"),
                control=roles.get("control"),
                counts={role: m for role, m in roles.items() if role not in _SIDES},
            )
        )
    return inputs


def judge_tick(record: AnalysisRecord, check: CheckRecord, tick: int, judge: Judge) -> TickVerdict:
    """The verdict on `check` after `tick`, from the record's measurements up to it."""
    inputs = tick_inputs(check, record.duration_s, tick)
    return evaluate(check.check, inputs, judge, has_previous=record.has_previous)


@dataclass(frozen=True)
class Rejudged:
    """One recorded tick verdict beside the one recomputed from the same measurements."""

    check: str
    tick: int
    recorded: AnalysisTickJudged
    recomputed: TickVerdict

    @property
    def identical(self) -> bool:
        """Whether the recomputed decision is the recorded one, bit for bit."""
        r, c = self.recorded, self.recomputed
        return (r.outcome, r.reason, r.judge, r.judge_version, r.failures, r.statistics) == (
            c.outcome,
            c.reason,
            c.judge,
            c.judge_version,
            c.failures,
            c.statistics,
        )


def rejudge(record: AnalysisRecord, judge: Judge) -> list[Rejudged]:
    """Every recorded tick verdict, recomputed with `judge` (THRESHOLD and HTTP checks are
    the service's own and come out the same whichever judge is named)."""
    out: list[Rejudged] = []
    for key, check in record.checks.items():
        for tick in sorted(check.judged):
            out.append(
                Rejudged(key, tick, check.judged[tick], judge_tick(record, check, tick, judge))
            )
    return out


def first_decision(rows: Sequence[Rejudged], *, recomputed: bool) -> tuple[str, str]:
    """(outcome, reason) of a check: its first `fail`/`pass`, else its last `continue`."""
    for row in rows:
        outcome, reason = (
            (row.recomputed.outcome, row.recomputed.reason)
            if recomputed
            else (row.recorded.outcome, row.recorded.reason)
        )
        if outcome != "continue":
            return outcome, reason
    if not rows:
        return "continue", "no tick was judged"
    last = rows[-1]
    if recomputed:
        return "continue", last.recomputed.reason
    return "continue", last.recorded.reason
