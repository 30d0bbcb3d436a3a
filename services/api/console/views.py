"""What each console page shows, read from the read models and the event log.

Reads only: the applications and deployments views (kept by the projector),
the `stage_logs` table, and streams folded as the API folds them. Every value
here ends up in a template, which escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from services.api.console.charts import AnalysisChart, analysis_chart
from services.api.reads import view_query
from shared.deployments import Deployment
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import ApplicationHealthChanged, DeploymentPlanned
from shared.events.ids import analysis_id_of
from shared.events.outbound import public_data
from shared.events.streams import analysis_stream, deployment_stream, drift_stream
from shared.snapshots import read_state
from shared.stream_folds import DEPLOYMENT

__all__ = [
    "APPS_PAGE",
    "AppHealth",
    "AppRow",
    "AppsPage",
    "DeploymentPage",
    "EventRow",
    "RunningConfig",
    "application_health",
    "applications_page",
    "deployment_history",
    "deployment_page",
    "event_rows",
    "running_config",
    "running_version",
]

APPS_PAGE: Final = 100
"""Rows per page of the applications list: the counts above it cover every application."""
_LOG_LINES: Final = 500
"""A stage's newest lines shown on the page."""

_APPS: Final = """
SELECT a.application_id, a.name, a.labels, a.disabled, a.sync_state, a.sync,
       d.commit_message, d.commander, d.deployed_version
FROM applications a
LEFT JOIN deployments d ON d.deployment_id = a.sync->'last_deployment'->>'deployment_id'
WHERE ($1::text IS NULL OR a.name LIKE '%' || $1 || '%' ESCAPE '\\')
  AND ($2::jsonb IS NULL OR a.labels @> $2::jsonb)
  AND ($3::text[] IS NULL OR a.sync_state = ANY($3::text[]))
  AND ($4::text IS NULL OR a.name > $4)
ORDER BY a.name
LIMIT $5
"""
_COUNTS: Final = """
SELECT sync_state, count(*) AS n, count(*) FILTER (WHERE disabled) AS disabled
FROM applications GROUP BY sync_state
"""
_HISTORY: Final = """
SELECT deployment_id, status, trigger, commit_hash, commit_message, commander, strategy,
       summary, deployed_version, triggered_at, completed_at
FROM deployments WHERE application_id = $1 ORDER BY created_position DESC LIMIT $2
"""
_PLANNED: Final = DeploymentPlanned.__struct_config__.tag
# `_trace_id`'s test in SQL: four dash-separated parts, the second 32 characters long.
_FIRST_TRACEPARENT: Final = """
SELECT metadata->>'traceparent' FROM events
WHERE stream_id = $1 AND metadata->>'traceparent' ~ '^[^-]*-[^-]{32}-[^-]*-[^-]*$'
  AND ($2::timestamptz IS NULL OR recorded_at <= $2::timestamptz)
ORDER BY stream_version
LIMIT 1
"""
_FIRST_OF_TYPE: Final = """
SELECT stream_version FROM events
WHERE stream_id = $1 AND event_type = $2
  AND ($3::timestamptz IS NULL OR recorded_at <= $3::timestamptz)
ORDER BY stream_version
LIMIT 1
"""
_LOGS: Final = """
SELECT stage_id, severity, message, recorded_at FROM (
  SELECT id, stage_id, severity, message, recorded_at,
         row_number() OVER (PARTITION BY stage_id ORDER BY id DESC) AS newest
  FROM stage_logs WHERE deployment_id = $1
) lines WHERE newest <= $2 ORDER BY id
"""
_LAST_HEALTH: Final = """
SELECT global_position, tx_id, stream_id, stream_version, event_id, event_type,
       schema_version, payload, metadata, recorded_at
FROM events WHERE stream_id = $1 AND event_type = 'application_health_changed'
ORDER BY stream_version DESC LIMIT 1
"""
_EVENTS: Final = """
SELECT global_position, tx_id, stream_id, stream_version, event_id, event_type,
       schema_version, payload, metadata, recorded_at
FROM events
WHERE ($1::text IS NULL OR stream_id LIKE $1 || '-%')
  AND ($2::text IS NULL OR stream_id = $2)
  AND ($3::timestamptz IS NULL OR recorded_at <= $3)
  AND ($4::bigint IS NULL OR global_position < $4)
ORDER BY global_position DESC
LIMIT $5
"""


@dataclass(frozen=True)
class AppRow:
    """One row of the applications page."""

    application_id: str
    name: str
    labels: Mapping[str, str]
    disabled: bool
    sync_state: str
    drift: str
    last_deployment: Mapping[str, Any] | None
    commit_message: str
    commander: str
    deployed_version: str = ""
    """What the last deployment deployed (clipped by the projection; the page escapes it)."""


@dataclass
class AppsPage:
    """One page of the applications list: its rows, the counts by state, the next cursor."""

    rows: list[AppRow]
    counts: dict[str, int]
    total: int
    next_after: str | None


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def applications_page(
    pool: asyncpg.Pool,
    *,
    search: str | None,
    labels: Mapping[str, str],
    states: tuple[str, ...],
    after: str | None,
    limit: int = APPS_PAGE,
) -> AppsPage:
    """A keyset page of applications, filtered by name, labels and states, with the counts."""
    label_doc = json.dumps(dict(labels)) if labels else None
    async with view_query("list applications", "applications projection"):
        rows = await pool.fetch(
            _APPS,
            _like_escaped(search) if search else None,
            label_doc,
            list(states) if states else None,
            after,
            limit + 1,
        )
        count_rows = await pool.fetch(_COUNTS)
    items = []
    for row in rows[:limit]:
        sync = _json(row["sync"]) or {}
        items.append(
            AppRow(
                application_id=row["application_id"],
                name=row["name"],
                labels=_json(row["labels"]) or {},
                disabled=row["disabled"],
                sync_state=row["sync_state"],
                drift=((sync.get("drift") or {}).get("state") or ""),
                last_deployment=sync.get("last_deployment"),
                commit_message=row["commit_message"] or "",
                commander=row["commander"] or "",
                deployed_version=row["deployed_version"] or "",
            )
        )
    counts = {r["sync_state"]: r["n"] for r in count_rows}
    counts["DISABLED"] = sum(r["disabled"] for r in count_rows)
    return AppsPage(
        rows=items,
        counts=counts,
        total=sum(r["n"] for r in count_rows),
        next_after=items[-1].name if len(rows) > limit else None,
    )


async def deployment_history(
    pool: asyncpg.Pool, application_id: str, limit: int = 20
) -> list[asyncpg.Record]:
    """The application's newest deployments, from the deployments projection."""
    async with view_query("deployment history", "deployments projection"):
        return list(await pool.fetch(_HISTORY, application_id, limit))


@dataclass(frozen=True)
class AppHealth:
    """The application's newest recorded health, as drift judged it."""

    healthy: bool
    summary: str
    since: datetime


async def application_health(store: EventStore, application_id: str) -> AppHealth | None:
    """Drift's latest verdict on the application's live workloads (`ApplicationHealthChanged`
    on `drift-<id>`), or None before drift has looked."""
    async with view_query("application health", "event log"):
        row = await store.pool.fetchrow(_LAST_HEALTH, drift_stream(application_id))
    if row is None:
        return None
    recorded = store.decode_row(row)
    event = recorded.event
    if not isinstance(event, ApplicationHealthChanged):
        return None
    return AppHealth(event.healthy, event.summary, recorded.recorded_at)


@dataclass(frozen=True)
class RunningConfig:
    """The config file at the running commit, as its plan recorded it (redacted)."""

    deployment_id: str
    """The deployment that planned the running commit, whose plan recorded the file."""
    commit_hash: str
    path: str
    text: str


async def running_config(
    store: EventStore, history: list[asyncpg.Record], running_commit: str
) -> RunningConfig | None:
    """The config file at the running commit, as the planner recorded it when it planned
    the deployment that succeeded at that commit (`DeploymentPlanned.config_text`); None
    when no such deployment is among `history` (newest first) or its plan predates the
    field (an adopted application has none)."""
    ran = _succeeded_at(history, running_commit)
    if ran is None:
        return None
    events = await store.read_stream(deployment_stream(ran["deployment_id"]))
    plans = [e.event for e in events if isinstance(e.event, DeploymentPlanned)]
    if not plans or not plans[-1].config_text:
        return None
    plan = plans[-1]
    where = f"{plan.path.strip('/')}/{plan.config_filename}" if plan.path else plan.config_filename
    return RunningConfig(ran["deployment_id"], running_commit, where, plan.config_text)


def running_version(history: list[asyncpg.Record], running_commit: str) -> str:
    """The version deployed at the running commit (what PipeCD's application page shows as
    its deployed version): that of the deployment among `history` that succeeded there;
    "" when none did."""
    ran = _succeeded_at(history, running_commit)
    return str(ran["deployed_version"]) if ran is not None else ""


def _succeeded_at(history: list[asyncpg.Record], running_commit: str) -> asyncpg.Record | None:
    """The newest deployment of `history` that succeeded at `running_commit`, if any."""
    if not running_commit:
        return None
    return next(
        (r for r in history if r["status"] == "SUCCESS" and r["commit_hash"] == running_commit),
        None,
    )


@dataclass
class DeploymentPage:
    """What the deployment page shows: the state, each stage's log, analyses, trace and plan."""

    view: Deployment
    logs: dict[str, list[asyncpg.Record]] = field(default_factory=dict)
    analyses: dict[str, AnalysisChart] = field(default_factory=dict)
    """stage id → its analysis."""
    trace_id: str = ""
    plan: DeploymentPlanned | None = None
    """The planner's plan as recorded: its reason and manifest diff (the fold keeps neither
    once a failure reason replaces the plan's)."""


def _trace_id(traceparent: str | None) -> str:
    """The trace id of a W3C `traceparent` ("" when it is not one)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


async def deployment_page(
    store: EventStore, deployment_id: str, *, up_to_time: datetime | None = None
) -> DeploymentPage | None:
    """The page's facts, at a cost that does not grow with the stream: the state from its
    snapshot (`shared.snapshots`), the trace and the plan found by two indexed lookups."""
    stream = deployment_stream(deployment_id)
    view = (await read_state(store, stream, DEPLOYMENT, up_to_time=up_to_time)).state
    if view is None:
        return None
    page = DeploymentPage(
        view=view,
        trace_id=await _first_trace_id(store, stream, up_to_time),
        plan=await _plan(store, stream, up_to_time),
    )
    async with view_query("stage logs", "stage log table"):
        for row in await store.pool.fetch(_LOGS, deployment_id, _LOG_LINES):
            if up_to_time is None or row["recorded_at"] <= up_to_time:
                page.logs.setdefault(row["stage_id"], []).append(row)
    for stage in view.stages:
        if stage.name != "ANALYSIS" or stage.started_at is None:
            continue
        analysis_id = analysis_id_of(deployment_id, stage.id)
        events = await store.read_stream(analysis_stream(analysis_id), up_to_time=up_to_time)
        if events:
            page.analyses[stage.id] = analysis_chart(analysis_id, events)
    return page


async def _first_trace_id(store: EventStore, stream: str, up_to_time: datetime | None) -> str:
    """`trace_id_of` the stream, asked of PostgreSQL: it walks the stream in order and stops
    at the first event with a well-formed traceparent (nearly always the first event)."""
    async with view_query("deployment trace", "event log"):
        parent = await store.pool.fetchval(_FIRST_TRACEPARENT, stream, up_to_time)
    return _trace_id(parent)


async def _plan(
    store: EventStore, stream: str, up_to_time: datetime | None
) -> DeploymentPlanned | None:
    """The deployment's plan: its first (the planner plans a deployment once, and the fold
    keeps the first plan too), found by type and read alone."""
    async with view_query("deployment plan", "event log"):
        version = await store.pool.fetchval(_FIRST_OF_TYPE, stream, _PLANNED, up_to_time)
    if version is None:
        return None
    [recorded] = await store.read_stream(stream, from_version=version, limit=1)
    return recorded.event if isinstance(recorded.event, DeploymentPlanned) else None


@dataclass(frozen=True)
class EventRow:
    """One event of the event log page."""

    global_position: int
    stream_id: str
    stream_version: int
    event_type: str
    recorded_at: datetime
    data: str
    metadata: str


def event_row(recorded: RecordedEvent) -> EventRow:
    data = msgspec.to_builtins(recorded.event)
    data.pop("type", None)
    data = public_data(recorded.event_type, data)  # never a key's hash
    return EventRow(
        global_position=recorded.global_position,
        stream_id=recorded.stream_id,
        stream_version=recorded.stream_version,
        event_type=recorded.event_type,
        recorded_at=recorded.recorded_at,
        data=json.dumps(data, indent=1, sort_keys=True, default=str),
        metadata=json.dumps(msgspec.to_builtins(recorded.metadata), sort_keys=True, default=str),
    )


async def event_rows(
    store: EventStore,
    *,
    category: str | None,
    stream_id: str | None,
    at: datetime | None,
    before: int | None,
    limit: int,
) -> list[EventRow]:
    """The newest events matching, newest first (at or before `at`, below position `before`)."""
    async with view_query("read the event log", "event log"):
        rows = await store.pool.fetch(_EVENTS, category, stream_id, at, before, limit)
    return [event_row(store.decode_row(row)) for row in rows]
