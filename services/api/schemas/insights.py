"""Insights: the four DORA metrics (docs/insights.md), per application and over all."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from services.api.schemas.fields import (
    Text,
)
from shared.insights import Figures, Period, PeriodFigures


class InsightsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /insights`: the range, the period and what to group by."""

    since: Annotated[
        Annotated[str, Meta(max_length=64)] | None,
        Meta(
            description="Start of the range: an ISO 8601 time with a zone, or a date (UTC "
            "midnight). Default: 30 days (day periods) or 12 weeks (week periods) before `until`."
        ),
    ] = None
    until: Annotated[
        Annotated[str, Meta(max_length=64)] | None,
        Meta(description="End of the range (excluded), as `since`. Default: now."),
    ] = None
    period: Annotated[
        Period, Meta(description="Figures per UTC day, or per ISO week (from Monday).")
    ] = Period.DAY
    application: Annotated[
        Text | None, Meta(description="Only this application (its name or id).")
    ] = None
    label: Annotated[
        tuple[Annotated[str, Meta(max_length=256, pattern="^[^=]+=.*$")], ...],
        Meta(description="key=value; only applications with every one of these labels."),
    ] = ()


class ApplicationInsights(msgspec.Struct, frozen=True, kw_only=True):
    """One application's four figures."""

    application_id: str
    name: str  # "" once the application is deleted
    figures: Figures


class InsightsReport(msgspec.Struct, frozen=True, kw_only=True):
    """The four DORA metrics over a range: in total, per period, per application."""

    since: datetime
    until: datetime
    period: Period
    application_id: str | None
    """The application asked for, as its id; None: every application the labels match."""
    labels: dict[str, str]
    totals: Figures
    periods: list[PeriodFigures]
    """Every day or week of the range in order, clipped to it; periods without deployments
    are there with zero counts."""
    applications: list[ApplicationInsights]
    """Each application with a deployment or recovery in the range, by name."""
