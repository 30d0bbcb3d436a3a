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
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.analysis.record import AnalysisRecord, CheckRecord, tick_at, tick_count
from shared.events.vocabulary import Verdict

__all__ = ["Conclusion", "Due", "conclusion", "due_ticks", "next_due_s"]


@dataclass(frozen=True)
class Due:
    key: str
    tick: int
    at_s: float
    final: bool


@dataclass(frozen=True)
class Conclusion:
    verdict: Verdict
    reason: str


def _decided(check: CheckRecord) -> bool:
    last = check.last_judged
    return last is not None and last.outcome in ("pass", "fail")


def _next_tick(check: CheckRecord) -> int:
    return max(check.measured, default=0) + 1


def due_ticks(record: AnalysisRecord, elapsed_s: float) -> list[Due]:
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
