"""`/insights`: the four DORA metrics over a time range, from the `insights` read model.

The rows of the range come from the projection's views (`shared/projections/
insights.py`), filtered by application or labels through the `applications`
view; `shared.insights` turns them into figures. Labels are the applications'
labels now, not at the time of each deployment.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.reads import view_query
from services.api.routes import Answer, Route
from services.api.schemas import ApplicationInsights, InsightsQuery, InsightsReport
from services.api.wire import json_response, query_labels, query_str
from shared.insights import (
    FinishedDeployment,
    Period,
    Recovery,
    by_period,
    figures,
    periods,
)

__all__ = ["ROUTES"]

_DEFAULT_SPAN: Final = {Period.DAY: timedelta(days=30), Period.WEEK: timedelta(weeks=12)}

_APP_BY_NAME: Final = "SELECT application_id FROM applications WHERE name = $1"

# The label filter goes through the applications view: an application deleted
# since (no row there) still counts when no label is asked for.
_DEPLOYMENTS: Final = """
SELECT d.application_id, coalesce(a.name, '') AS name, d.status, d.completed_at, d.lead_time_s
FROM insight_deployments d
LEFT JOIN applications a ON a.application_id = d.application_id
WHERE d.completed_at >= $1 AND d.completed_at < $2 AND d.status IN ('SUCCESS', 'FAILURE')
  AND ($3::text IS NULL OR d.application_id = $3)
  AND ($4::jsonb IS NULL OR a.labels @> $4::jsonb)
"""
_RECOVERIES: Final = """
SELECT r.application_id, coalesce(a.name, '') AS name, r.recovered_at, r.recovery_s
FROM insight_recoveries r
LEFT JOIN applications a ON a.application_id = r.application_id
WHERE r.recovered_at >= $1 AND r.recovered_at < $2
  AND ($3::text IS NULL OR r.application_id = $3)
  AND ($4::jsonb IS NULL OR a.labels @> $4::jsonb)
"""


async def get(request: web.Request) -> web.Response:
    period = _period(request)
    until = _time(request, "until") or datetime.now(UTC)
    since = _time(request, "since") or until - _DEFAULT_SPAN[period]
    try:
        periods(since, until, period)  # the range's checks, before any query
    except ValueError as exc:
        raise ErrorReply(400, "invalid_request", str(exc), field="since") from exc
    labels = query_labels(request)
    application = query_str(request, "application")
    api = deps(request)
    async with view_query("read insights", "insights projection"):
        application_id = application
        if application is not None:
            application_id = await api.pool.fetchval(_APP_BY_NAME, application) or application
        wanted = (since, until, application_id, json.dumps(labels) if labels else None)
        deployment_rows = await api.pool.fetch(_DEPLOYMENTS, *wanted)
        recovery_rows = await api.pool.fetch(_RECOVERIES, *wanted)
    names: dict[str, str] = {}
    deployments: dict[str, list[FinishedDeployment]] = defaultdict(list)
    recoveries: dict[str, list[Recovery]] = defaultdict(list)
    for row in deployment_rows:
        names[row["application_id"]] = row["name"]
        deployments[row["application_id"]].append(
            FinishedDeployment(
                application_id=row["application_id"],
                status=row["status"],
                completed_at=row["completed_at"],
                lead_time_s=row["lead_time_s"],
            )
        )
    for row in recovery_rows:
        names[row["application_id"]] = row["name"]
        recoveries[row["application_id"]].append(
            Recovery(
                application_id=row["application_id"],
                recovered_at=row["recovered_at"],
                recovery_s=row["recovery_s"],
            )
        )
    every_deployment = [d for rows in deployments.values() for d in rows]
    every_recovery = [r for rows in recoveries.values() for r in rows]
    report = InsightsReport(
        since=since,
        until=until,
        period=period,
        application_id=application_id,
        labels=labels,
        totals=figures(every_deployment, every_recovery, since, until),
        periods=by_period(every_deployment, every_recovery, since, until, period),
        applications=[
            ApplicationInsights(
                application_id=app,
                name=names[app],
                figures=figures(deployments[app], recoveries[app], since, until),
            )
            for app in sorted(names, key=lambda a: (names[a], a))
        ],
    )
    return json_response(report)


def _period(request: web.Request) -> Period:
    raw = query_str(request, "period") or Period.DAY.value
    try:
        return Period(raw)
    except ValueError:
        raise ErrorReply(
            400, "invalid_request", f"period must be day or week, not {raw!r}", field="period"
        ) from None


def _time(request: web.Request, name: str) -> datetime | None:
    """An ISO 8601 time with a zone, or a date (its UTC midnight)."""
    raw = query_str(request, name, max_length=64)
    if raw is None:
        return None
    at: datetime | None
    try:
        if len(raw) == 10:
            at = datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        else:
            # A `+` of an offset arrives as a space when the caller did not escape it.
            at = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ErrorReply(
            400,
            "invalid_request",
            f"{name} must be a date (2026-01-31) or an ISO 8601 time with a zone "
            "(2026-01-31T12:00:00Z)",
            field=name,
        )
    return at


ROUTES: Final = (
    Route(
        "GET",
        "/insights",
        get,
        "getInsights",
        Access.READ,
        summary="The four DORA metrics over a time range",
        tag="insights",
        answers=(Answer(200, "Figures in total, per period and per application.", InsightsReport),),
        errors=(400, 503),
        description=(
            "Deployment frequency, lead time for changes (commit → SUCCESS), change failure "
            "rate and failed-deployment recovery time, from the `insights` read model "
            "(eventually consistent); definitions in docs/insights.md."
        ),
        query=InsightsQuery,
    ),
)
