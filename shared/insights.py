"""The four DORA metrics, computed from the facts the `insights` projection keeps (pure).

The projection (`shared/projections/insights.py`) records one row per
finished deployment — its status, when it finished, its lead time — and one
per recovery; this module turns the rows of a time range into figures, for
the whole range and for each day or week in it. Definitions (docs/insights.md):

- deployment frequency: successful deployments per day;
- lead time for changes: commit time → deployment SUCCESS, the median;
- change failure rate: FAILURE / (SUCCESS + FAILURE) — a cancelled deployment
  and one that failed to plan changed nothing and are not counted;
- failed-deployment recovery time: from the first failure of a streak of an
  application's failures to its next SUCCESS, the median.

A deployment counts in the period it finished in; a recovery in the period
it ended in. Periods are UTC days, or ISO weeks starting on Monday 00:00 UTC,
clipped to the range asked for.
"""

from __future__ import annotations

import bisect
import enum
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

__all__ = [
    "MAX_PERIODS",
    "Figures",
    "FinishedDeployment",
    "Period",
    "PeriodFigures",
    "Recovery",
    "by_period",
    "commit_time",
    "figures",
    "periods",
]

MAX_PERIODS: Final = 400
"""The most periods one answer holds: a year and more of days, or seven years of weeks."""

_SECONDS_PER_DAY: Final = 86_400.0


class Period(enum.StrEnum):
    """The stretch each figure of a series covers."""

    DAY = "day"
    WEEK = "week"


class FinishedDeployment(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment that ended SUCCESS or FAILURE, as the projection recorded it."""

    application_id: str
    status: str  # SUCCESS | FAILURE
    completed_at: datetime
    lead_time_s: float | None = None
    """Commit time → SUCCESS; None when failed, or when the commit time is unknown."""


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """An application's failure streak ended by a successful deployment."""

    application_id: str
    recovered_at: datetime
    recovery_s: float


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """The four metrics over one stretch of time, with the counts they come from."""

    deployments: int
    """Finished SUCCESS or FAILURE."""
    successful: int
    failed: int
    deployment_frequency_per_day: float
    """Successful deployments per day of the stretch."""
    lead_time_median_s: float | None
    """Median commit → SUCCESS time, seconds; None without a success of known commit time."""
    lead_times: int
    """How many successes the lead time is the median of."""
    change_failure_rate: float | None
    """failed / deployments; None without deployments."""
    recovery_time_median_s: float | None
    """Median time from a failure streak's first failure to the next success; None if none."""
    recoveries: int


class PeriodFigures(msgspec.Struct, frozen=True, kw_only=True):
    """The figures of one period, [start, end)."""

    start: datetime
    end: datetime
    figures: Figures


def commit_time(text: str) -> datetime | None:
    """A commit time recorded as git gives it (`%cI`), in UTC; None if absent or unreadable.

    The text comes from a repository, so anything may be there: a time without
    an offset is not guessed at.
    """
    if not text or len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def figures(
    deployments: Iterable[FinishedDeployment],
    recoveries: Iterable[Recovery],
    start: datetime,
    end: datetime,
) -> Figures:
    """The figures of what finished in [start, end)."""
    inside = [d for d in deployments if start <= d.completed_at < end]
    recovered = [r.recovery_s for r in recoveries if start <= r.recovered_at < end]
    successful = sum(1 for d in inside if d.status == "SUCCESS")
    failed = sum(1 for d in inside if d.status == "FAILURE")
    counted = successful + failed
    lead_times = [
        d.lead_time_s for d in inside if d.status == "SUCCESS" and d.lead_time_s is not None
    ]
    days = (end - start).total_seconds() / _SECONDS_PER_DAY
    return Figures(
        deployments=counted,
        successful=successful,
        failed=failed,
        deployment_frequency_per_day=successful / days if days > 0 else 0.0,
        lead_time_median_s=statistics.median(lead_times) if lead_times else None,
        lead_times=len(lead_times),
        change_failure_rate=failed / counted if counted else None,
        recovery_time_median_s=statistics.median(recovered) if recovered else None,
        recoveries=len(recovered),
    )


def periods(start: datetime, end: datetime, period: Period) -> list[tuple[datetime, datetime]]:
    """The calendar days or weeks (UTC) that overlap [start, end), each clipped to it.

    Raises ValueError for an empty range or one of more than `MAX_PERIODS` periods.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("from and to must carry a time zone")
    if end <= start:
        raise ValueError("to must be after from")
    step = timedelta(days=1 if period is Period.DAY else 7)
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = day if period is Period.DAY else day - timedelta(days=day.weekday())
    if (end - first) / step > MAX_PERIODS:
        raise ValueError(f"the range holds more than {MAX_PERIODS} {period.value}s")
    bounds: list[tuple[datetime, datetime]] = []
    at = first
    while at < end:
        bounds.append((max(at, start), min(at + step, end)))
        at += step
    return bounds


def by_period(
    deployments: Iterable[FinishedDeployment],
    recoveries: Iterable[Recovery],
    start: datetime,
    end: datetime,
    period: Period,
) -> list[PeriodFigures]:
    """`figures` for each period of [start, end); each row is looked at once."""
    bounds = periods(start, end, period)
    starts = [a for a, _ in bounds]
    shelves: list[tuple[list[FinishedDeployment], list[Recovery]]] = [([], []) for _ in bounds]
    for d in deployments:
        if start <= d.completed_at < end:
            shelves[bisect.bisect_right(starts, d.completed_at) - 1][0].append(d)
    for r in recoveries:
        if start <= r.recovered_at < end:
            shelves[bisect.bisect_right(starts, r.recovered_at) - 1][1].append(r)
    return [
        PeriodFigures(start=a, end=b, figures=figures(shelf[0], shelf[1], a, b))
        for (a, b), shelf in zip(bounds, shelves, strict=True)
    ]
