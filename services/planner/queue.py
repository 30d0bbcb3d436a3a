"""The planner's queue cache in PostgreSQL: `planner_deployments` and `planner_applications`.

What the rows say is the decider's fold of the events (`decider.evolve_queue`,
`row_state`, `running_commit_of`); this module only reads and writes them,
inside the consumer's transaction and under a per-application advisory lock,
so "the oldest waiting deployment of this application" is answered at once.
The one thing the events do not say is `planning_since`: when the planner
first tried to plan a deployment (a retried plan gives up after a while).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.planner.decider import AppQueue, RowState
from shared.eventlog.store import NO_STREAM
from shared.events.streams import application_stream

__all__ = [
    "LoadedQueue",
    "enqueue",
    "enqueue_many",
    "load_queue",
    "load_queues",
    "lock",
    "lock_all",
    "lock_key",
    "set_planning_since",
    "set_running",
    "set_states",
    "stalled",
    "triggered_commit",
    "try_lock",
]

# Triggers take their places in line, in their order, once each (a redelivered trigger
# keeps its place): a trigger is the first in line (`planning_since` set) when nothing of
# its application waits or runs, in the table or earlier in this batch (rows one
# statement inserts are not visible to it).
_ENQUEUE_MANY = """
INSERT INTO planner_deployments (deployment_id, application_id, state, commit_hash,
                                 planning_since)
SELECT t.deployment_id, t.application_id, 'waiting', t.commit_hash,
       CASE WHEN EXISTS (SELECT 1 FROM planner_deployments d
                         WHERE d.application_id = t.application_id
                           AND d.state IN ('waiting', 'active'))
              OR EXISTS (SELECT 1
                         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
                              AS e(deployment_id, application_id, ord)
                         WHERE e.application_id = t.application_id AND e.ord < t.ord
                           AND NOT EXISTS (SELECT 1 FROM planner_deployments x
                                           WHERE x.deployment_id = e.deployment_id))
            THEN NULL ELSE $4::timestamptz END
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
     AS t(deployment_id, application_id, commit_hash, ord)
ORDER BY t.ord
ON CONFLICT (deployment_id) DO NOTHING
"""
# The queues and running commits of several applications in one round trip: a row per
# waiting or active deployment, or one row of NULLs for an application with none, each
# with its running commit and its `application-<id>` stream's version ($2), which says
# whether a plan made before from the application as read then still stands.
_QUEUES = """
SELECT app.application_id, d.deployment_id, d.state, d.commit_hash, d.planning_since,
       r.running_commit,
       (SELECT e.stream_version FROM events e WHERE e.stream_id = app.stream_id
        ORDER BY e.stream_version DESC LIMIT 1) AS app_version
FROM unnest($1::text[], $2::text[]) AS app(application_id, stream_id)
LEFT JOIN planner_deployments d
  ON d.application_id = app.application_id AND d.state IN ('waiting', 'active')
LEFT JOIN planner_applications r ON r.application_id = app.application_id
ORDER BY app.application_id, d.seq
"""
_DEPLOYMENT = "SELECT state, commit_hash FROM planner_deployments WHERE deployment_id = $1"
_SET_STATES = """
UPDATE planner_deployments d SET state = m.state, updated_at = clock_timestamp()
FROM unnest($1::text[], $2::text[]) AS m(deployment_id, state)
WHERE d.deployment_id = m.deployment_id
"""
_PLANNING_SINCE = """
UPDATE planner_deployments
SET planning_since = coalesce(planning_since, $2), updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_SET_RUNNING = """
INSERT INTO planner_applications (application_id, running_commit, deployment_id)
VALUES ($1, $2, $3)
ON CONFLICT (application_id) DO UPDATE
  SET running_commit = excluded.running_commit, deployment_id = excluded.deployment_id,
      updated_at = clock_timestamp()
"""
# Applications whose oldest waiting deployment is not being planned by anyone:
# nothing active, and it has waited at least a retry interval.
_STALLED = """
SELECT DISTINCT w.application_id FROM planner_deployments w
WHERE w.state = 'waiting' AND w.created_at < $1
  AND NOT EXISTS (SELECT 1 FROM planner_deployments a
                  WHERE a.application_id = w.application_id AND a.state = 'active')
"""


def lock_key(application_id: str) -> int:
    """The advisory-lock key that serialises the planner's work on one application."""
    digest = hashlib.blake2b(f"slipway-planner:{application_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def lock(conn: asyncpg.Connection, application_id: str) -> None:
    """Wait for the application's lock, held until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(application_id))


async def lock_all(conn: asyncpg.Connection, application_ids: Sequence[str]) -> None:
    """Wait for each application's lock in the order given, in one round trip (held until
    the transaction ends). Callers that may hold several pass them in one order."""
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) WITH ORDINALITY"
        " AS t(k, n)",
        [lock_key(application_id) for application_id in application_ids],
    )


async def try_lock(conn: asyncpg.Connection, application_id: str) -> bool:
    """Take the application's lock if nobody holds it (someone planning it now does)."""
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_key(application_id))
    )


async def enqueue(
    pool: asyncpg.Pool, deployment_id: str, application_id: str, commit: str, now: datetime
) -> None:
    """The deployment takes its place in line (once: a redelivered trigger keeps its place)."""
    await enqueue_many(pool, [(deployment_id, application_id, commit)], now)


async def enqueue_many(
    pool: asyncpg.Pool, triggers: Sequence[tuple[str, str, str]], now: datetime
) -> None:
    """`enqueue` for (deployment, application, commit) triggers in their order, one commit."""
    await pool.execute(
        _ENQUEUE_MANY,
        [deployment_id for deployment_id, _, _ in triggers],
        [application_id for _, application_id, _ in triggers],
        [commit for _, _, commit in triggers],
        now,
    )


@dataclass(frozen=True)
class LoadedQueue:
    """What planning an application starts from, read in one query under its lock."""

    queue: AppQueue
    since: dict[str, datetime | None]
    """When the planner first tried each deployment (None: not yet)."""
    running_commit: str
    """The application's running commit ("" before its first successful deployment)."""
    app_version: int = NO_STREAM
    """The version of the application's stream (`NO_STREAM`: none): a plan made from the
    application read at another version is not used (`prepared.PreparedPlans.plan`)."""


async def load_queue(conn: asyncpg.Connection, app_id: str) -> LoadedQueue:
    """The application's queue, when the planner first tried each, and its running commit."""
    return (await load_queues(conn, [app_id]))[app_id]


async def load_queues(
    conn: asyncpg.Connection | asyncpg.Pool, app_ids: Iterable[str]
) -> dict[str, LoadedQueue]:
    """`load_queue` of each application, in one query (no lock: an optimistic read)."""
    rows_of: dict[str, list[asyncpg.Record]] = {app_id: [] for app_id in app_ids}
    ids = list(rows_of)
    for row in await conn.fetch(_QUEUES, ids, [application_stream(app_id) for app_id in ids]):
        rows_of[row["application_id"]].append(row)
    return {app_id: _loaded(app_id, rows) for app_id, rows in rows_of.items()}


def _loaded(app_id: str, rows: Sequence[asyncpg.Record]) -> LoadedQueue:
    active = next((r["deployment_id"] for r in rows if r["state"] == "active"), None)
    waiting = tuple(r["deployment_id"] for r in rows if r["state"] == "waiting")
    since = {r["deployment_id"]: r["planning_since"] for r in rows if r["deployment_id"]}
    running = str(rows[0]["running_commit"] or "") if rows else ""
    version = rows[0]["app_version"] if rows else None
    return LoadedQueue(
        AppQueue(app_id, active, waiting),
        since,
        running,
        NO_STREAM if version is None else int(version),
    )


async def triggered_commit(conn: asyncpg.Connection, deployment_id: str) -> str:
    """The commit the deployment was triggered for ("" when the planner never saw it)."""
    row = await conn.fetchrow(_DEPLOYMENT, deployment_id)
    return str(row["commit_hash"]) if row is not None else ""


async def set_states(conn: asyncpg.Connection, moves: Mapping[str, RowState]) -> None:
    """Move deployments' queue rows, each to where it ends: those that end active
    after the others (one statement each), as the one-active-per-application index checks
    every row as it is written (a completion frees the place its successor takes)."""
    for active in (False, True):
        part = {d: state for d, state in moves.items() if (state == RowState.ACTIVE) is active}
        if part:
            await conn.execute(_SET_STATES, list(part), list(part.values()))


async def set_planning_since(conn: asyncpg.Connection, deployment_id: str, now: datetime) -> None:
    """Note the first try to plan it (later tries keep the first)."""
    await conn.execute(_PLANNING_SINCE, deployment_id, now)


async def set_running(
    conn: asyncpg.Connection, application_id: str, commit: str, deployment_id: str
) -> None:
    """Record the commit the application now runs, and the deployment that brought it."""
    await conn.execute(_SET_RUNNING, application_id, commit, deployment_id)


async def stalled(pool: asyncpg.Pool, before: datetime) -> list[str]:
    """Applications whose oldest waiting deployment, there since `before`, nobody plans."""
    return [row["application_id"] for row in await pool.fetch(_STALLED, before)]
