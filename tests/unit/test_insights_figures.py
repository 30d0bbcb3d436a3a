"""`shared.insights`: commit times from untrusted text, calendar periods, the figures' rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.insights import (
    MAX_PERIODS,
    FinishedDeployment,
    Period,
    Recovery,
    by_period,
    commit_time,
    figures,
    periods,
)

WED = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:00:00+01:00", datetime(2026, 3, 2, 8, tzinfo=UTC)),
        ("2026-03-02T08:00:00Z", datetime(2026, 3, 2, 8, tzinfo=UTC)),
        ("2026-03-02T08:00:00", None),  # no zone: not guessed
        ("", None),
        ("last tuesday", None),
        ("2026-03-02T08:00:00Z" + " " * 100, None),
    ],
)
def test_commit_time_reads_git_iso_times_and_nothing_else(
    text: str, expected: datetime | None
) -> None:
    assert commit_time(text) == expected


def test_weeks_start_on_monday_and_are_clipped_to_the_range() -> None:
    bounds = periods(WED, WED + timedelta(days=10), Period.WEEK)
    assert [(a.isoformat(), b.isoformat()) for a, b in bounds] == [
        ("2026-03-04T15:30:00+00:00", "2026-03-09T00:00:00+00:00"),
        ("2026-03-09T00:00:00+00:00", "2026-03-14T15:30:00+00:00"),
    ]
    assert len(periods(WED, WED + timedelta(days=1), Period.DAY)) == 2


def test_ranges_that_are_empty_or_too_long_are_refused() -> None:
    with pytest.raises(ValueError, match="after"):
        periods(WED, WED, Period.DAY)
    with pytest.raises(ValueError, match=str(MAX_PERIODS)):
        periods(WED, WED + timedelta(days=MAX_PERIODS + 1), Period.DAY)


def test_cancelled_ones_do_not_count_and_a_failure_has_no_lead_time() -> None:
    done = [
        FinishedDeployment(application_id="a", status="SUCCESS", completed_at=WED, lead_time_s=60),
        FinishedDeployment(application_id="a", status="FAILURE", completed_at=WED, lead_time_s=5),
        FinishedDeployment(application_id="a", status="CANCELLED", completed_at=WED),
        FinishedDeployment(application_id="a", status="SUCCESS", completed_at=WED),
    ]
    got = figures(done, [], WED, WED + timedelta(days=2))
    assert (got.deployments, got.successful, got.failed) == (3, 2, 1)
    assert (got.lead_time_median_s, got.lead_times) == (60, 1)
    assert got.deployment_frequency_per_day == 1.0
    assert got.recovery_time_median_s is None and got.recoveries == 0


def test_each_row_lands_in_the_period_it_ended_in() -> None:
    thursday = WED + timedelta(hours=10)
    done = [FinishedDeployment(application_id="a", status="FAILURE", completed_at=WED)]
    back = [Recovery(application_id="a", recovered_at=thursday, recovery_s=86_400)]
    first, second = by_period(done, back, WED, WED + timedelta(hours=20), Period.DAY)
    assert (first.figures.failed, first.figures.recoveries) == (1, 0)
    assert first.figures.change_failure_rate == 1.0
    assert (second.figures.failed, second.figures.recovery_time_median_s) == (0, 86_400)
