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
from datetime import datetime

import asyncpg

from services.planner.decider import AppQueue, RowState

__all__ = [
    "enqueue",
    "load_queue",
    "lock",
    "lock_key",
    "running_commit",
    "set_planning_since",
    "set_running",
    "set_state",
    "stalled",
    "triggered_commit",
    "try_lock",
]

_ENQUEUE = """
INSERT INTO planner_deployments (deployment_id, application_id, state, commit_hash,
                                 planning_since)
SELECT $1, $2, 'waiting', $3,
       CASE WHEN EXISTS (SELECT 1 FROM planner_deployments
                         WHERE application_id = $2 AND state IN ('waiting', 'active'))
            THEN NULL ELSE $4::timestamptz END
ON CONFLICT (deployment_id) DO NOTHING
"""
_QUEUE = """
SELECT deployment_id, state, commit_hash, planning_since FROM planner_deployments
WHERE application_id = $1 AND state IN ('waiting', 'active') ORDER BY seq
"""
_DEPLOYMENT = "SELECT state, commit_hash FROM planner_deployments WHERE deployment_id = $1"
_SET_STATE = """
UPDATE planner_deployments SET state = $2, updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_PLANNING_SINCE = """
UPDATE planner_deployments
SET planning_since = coalesce(planning_since, $2), updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_RUNNING = "SELECT running_commit FROM planner_applications WHERE application_id = $1"
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


async def try_lock(conn: asyncpg.Connection, application_id: str) -> bool:
    """Take the application's lock if nobody holds it (someone planning it now does)."""
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_key(application_id))
    )


async def enqueue(
    pool: asyncpg.Pool, deployment_id: str, application_id: str, commit: str, now: datetime
) -> None:
    """The deployment takes its place in line (once: a redelivered trigger keeps its place)."""
    await pool.execute(_ENQUEUE, deployment_id, application_id, commit, now)


async def load_queue(
    conn: asyncpg.Connection, app_id: str
) -> tuple[AppQueue, dict[str, datetime | None]]:
    """The application's queue, and when the planner first tried each (None: not yet)."""
    rows = await conn.fetch(_QUEUE, app_id)
    active = next((r["deployment_id"] for r in rows if r["state"] == "active"), None)
    waiting = tuple(r["deployment_id"] for r in rows if r["state"] == "waiting")
    since = {r["deployment_id"]: r["planning_since"] for r in rows}
    return AppQueue(app_id, active, waiting), since


async def triggered_commit(conn: asyncpg.Connection, deployment_id: str) -> str:
    """The commit the deployment was triggered for ("" when the planner never saw it)."""
    row = await conn.fetchrow(_DEPLOYMENT, deployment_id)
    return str(row["commit_hash"]) if row is not None else ""


async def running_commit(conn: asyncpg.Connection, application_id: str) -> str:
    """The application's running commit ("" before its first successful deployment)."""
    return str(await conn.fetchval(_RUNNING, application_id) or "")


async def set_state(conn: asyncpg.Connection, deployment_id: str, state: RowState) -> None:
    """Move a deployment's queue row to `state`."""
    await conn.execute(_SET_STATE, deployment_id, state)


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
