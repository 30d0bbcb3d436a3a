"""The `insights` read model: the facts the four DORA metrics are computed from.

Four tables, read by `GET /api/v1/insights` through their views and turned
into figures by `shared.insights`:

- `insight_deployments`: one row per deployment, with its commit's time and,
  once it finished, its status, when, and (for a SUCCESS) its lead time;
- `insight_commits`: the commit times the gitwatcher observed
  (`CommitObserved.committed_at`), for triggers that do not carry their own
  (drift's, and any recorded before `DeploymentTriggered.committed_at`);
- `insight_failing`: applications whose last finished deployment failed, with
  the first failure of the streak;
- `insight_recoveries`: each streak ended by a SUCCESS, and how long it lasted.

A deployment counts once, at its first completion; times are the log's
`recorded_at` of the completion (never `now()`), so a replay gives the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

import asyncpg

from shared.events.base import RecordedEvent
from shared.events.catalog import CommitObserved, DeploymentCompleted, DeploymentTriggered
from shared.insights import commit_time
from shared.projections.base import Projection
from shared.projections.tables import quote

__all__ = ["InsightsProjection"]

DEPLOYMENTS: Final = "insight_deployments"
COMMITS: Final = "insight_commits"
FAILING: Final = "insight_failing"
RECOVERIES: Final = "insight_recoveries"

_TABLES: Final = {
    DEPLOYMENTS: """
CREATE TABLE {table} (
  deployment_id   text        PRIMARY KEY,
  application_id  text        NOT NULL,
  repository_id   text        NOT NULL,
  commit_hash     text        NOT NULL,
  committed_at    timestamptz,
  triggered_at    timestamptz,
  status          text,
  completed_at    timestamptz,
  lead_time_s     double precision
);
CREATE INDEX ON {table} (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX ON {table} (application_id, completed_at);
""",
    COMMITS: """
CREATE TABLE {table} (
  commit_hash    text        NOT NULL,
  repository_id  text        NOT NULL,
  committed_at   timestamptz NOT NULL,
  PRIMARY KEY (commit_hash, repository_id)
);
""",
    FAILING: """
CREATE TABLE {table} (
  application_id  text        PRIMARY KEY,
  deployment_id   text        NOT NULL,
  failed_at       timestamptz NOT NULL
);
""",
    RECOVERIES: """
CREATE TABLE {table} (
  recovered_deployment_id  text             PRIMARY KEY,
  application_id           text             NOT NULL,
  failed_deployment_id     text             NOT NULL,
  failed_at                timestamptz      NOT NULL,
  recovered_at             timestamptz      NOT NULL,
  recovery_s               double precision NOT NULL
);
CREATE INDEX ON {table} (recovered_at);
CREATE INDEX ON {table} (application_id, recovered_at);
""",
}

_COMMIT = """
INSERT INTO {commits} (commit_hash, repository_id, committed_at) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""

_TRIGGERED = """
INSERT INTO {deployments} (deployment_id, application_id, repository_id, commit_hash,
                           committed_at, triggered_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (deployment_id) DO NOTHING
"""

# A completion this table never saw the trigger of (a stream written without
# one) still counts: it has its application, and its commit if the event says.
_COMPLETED_UNSEEN = """
INSERT INTO {deployments} (deployment_id, application_id, repository_id, commit_hash)
VALUES ($1, $2, '', $3)
ON CONFLICT (deployment_id) DO NOTHING
"""

# Only the first completion counts. The commit time falls back on what the
# gitwatcher observed of that commit (in the trigger's repository when known).
# A lead time below zero (a committer's clock ahead of ours) is not a lead time.
_FINISH = """
UPDATE {deployments} AS d
SET status = $2, completed_at = $3,
    committed_at = c.at,
    lead_time_s = CASE WHEN $2 = 'SUCCESS' AND c.at <= $3
                       THEN extract(epoch FROM $3 - c.at)::double precision END
FROM (SELECT coalesce(d0.committed_at, (
        SELECT min(k.committed_at) FROM {commits} k
        WHERE k.commit_hash = d0.commit_hash
          AND (d0.repository_id = '' OR k.repository_id = d0.repository_id))) AS at
      FROM {deployments} d0 WHERE d0.deployment_id = $1) AS c
WHERE d.deployment_id = $1 AND d.completed_at IS NULL
RETURNING d.application_id
"""

# The first failure of a streak stays: the recovery time runs from it.
_FAILED = """
INSERT INTO {failing} (application_id, deployment_id, failed_at) VALUES ($1, $2, $3)
ON CONFLICT (application_id) DO NOTHING
"""

_RECOVERED = """
WITH ended AS (DELETE FROM {failing} WHERE application_id = $1 RETURNING *)
INSERT INTO {recoveries} (recovered_deployment_id, application_id, failed_deployment_id,
                          failed_at, recovered_at, recovery_s)
SELECT $2, e.application_id, e.deployment_id, e.failed_at, $3,
       greatest(extract(epoch FROM $3 - e.failed_at), 0)::double precision
FROM ended e
"""


class InsightsProjection(Projection):
    """Deployments' outcomes and lead times, and failure streaks with their recovery times."""

    name = "insights"
    version = 1
    tables = _TABLES

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Record a commit's time, a deployment's commit, or a deployment's outcome."""
        names = {
            "deployments": quote(tables[DEPLOYMENTS]),
            "commits": quote(tables[COMMITS]),
            "failing": quote(tables[FAILING]),
            "recoveries": quote(tables[RECOVERIES]),
        }
        match event.event:
            case CommitObserved() as e:
                at = commit_time(e.committed_at)
                if at is not None:
                    await conn.execute(_COMMIT.format(**names), e.commit_hash, e.repository_id, at)
            case DeploymentTriggered() as e:
                await conn.execute(
                    _TRIGGERED.format(**names),
                    e.deployment_id,
                    e.application_id,
                    e.repository_id,
                    e.commit_hash,
                    commit_time(e.committed_at),
                    event.recorded_at,
                )
            case DeploymentCompleted() as e:
                await self._finish(conn, names, e, event.recorded_at)
            case _:
                pass

    async def _finish(
        self,
        conn: asyncpg.Connection,
        names: Mapping[str, str],
        e: DeploymentCompleted,
        at: datetime,
    ) -> None:
        await conn.execute(
            _COMPLETED_UNSEEN.format(**names), e.deployment_id, e.application_id, e.commit_hash
        )
        application_id = await conn.fetchval(
            _FINISH.format(**names), e.deployment_id, str(e.status), at
        )
        if application_id is None:
            return  # completed before: only the first completion counts
        if e.status == "FAILURE":
            await conn.execute(_FAILED.format(**names), application_id, e.deployment_id, at)
        elif e.status == "SUCCESS":
            await conn.execute(_RECOVERED.format(**names), application_id, e.deployment_id, at)
