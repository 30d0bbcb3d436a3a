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

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from shared.events.base import RecordedEvent
from shared.events.catalog import CommitObserved, DeploymentCompleted, DeploymentTriggered
from shared.insights import commit_time
from shared.projections.base import Projection
from shared.projections.rows import rows_json, upsert_from_json
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

# A batch is folded in memory over the rows it touches (read first, three statements) and
# written back (at most five; the deployments as JSON, `shared.projections.rows`),
# whatever its size: a replay of a long log is bound by round trips.
_READ_DEPLOYMENTS = """
SELECT deployment_id, application_id, repository_id, commit_hash, committed_at, triggered_at,
       status, completed_at, lead_time_s
FROM {deployments} WHERE deployment_id = ANY($1::text[])
"""
_READ_COMMITS = """
SELECT commit_hash, repository_id, committed_at FROM {commits} WHERE commit_hash = ANY($1::text[])
"""
_READ_FAILING = """
SELECT application_id, deployment_id, failed_at FROM {failing}
WHERE application_id = ANY($1::text[])
"""

_WRITE_COMMITS = """
INSERT INTO {commits} (commit_hash, repository_id, committed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
ON CONFLICT DO NOTHING
"""
_CLEAR_FAILING = "DELETE FROM {failing} WHERE application_id = ANY($1::text[])"
_WRITE_FAILING = """
INSERT INTO {failing} (application_id, deployment_id, failed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
"""
_WRITE_RECOVERIES = """
INSERT INTO {recoveries} (recovered_deployment_id, application_id, failed_deployment_id,
                          failed_at, recovered_at, recovery_s)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                     $5::timestamptz[], $6::double precision[])
"""

_EVENTS: Final = (CommitObserved, DeploymentTriggered, DeploymentCompleted)


class _Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """A row of `insight_deployments`."""

    deployment_id: str
    application_id: str
    repository_id: str
    commit_hash: str
    committed_at: datetime | None = None
    triggered_at: datetime | None = None
    status: str | None = None
    completed_at: datetime | None = None
    lead_time_s: float | None = None


_WRITE_DEPLOYMENTS: Final = upsert_from_json(_Deployment.__struct_fields__, "deployment_id")


class _Failing(msgspec.Struct, frozen=True):
    """A row of `insight_failing`: the first failure of an application's streak."""

    deployment_id: str
    failed_at: datetime


class _Recovery(msgspec.Struct, frozen=True):
    """A row of `insight_recoveries`."""

    recovered_deployment_id: str
    application_id: str
    failed_deployment_id: str
    failed_at: datetime
    recovered_at: datetime
    recovery_s: float


class _Batch:
    """The rows a batch touches, as they stand, and the fold of its events over them.

    Pure once loaded: `evolve` is the projection's rule for one event, in
    memory. A deployment counts once, at its first completion; its commit time
    falls back on the earliest the gitwatcher observed of its commit (in the
    trigger's repository when known), among the commits recorded before it.
    """

    def __init__(
        self,
        deployments: Mapping[str, _Deployment],
        commits: Mapping[tuple[str, str], datetime],
        failing: Mapping[str, _Failing],
    ) -> None:
        self.deployments = dict(deployments)
        # Commit times by hash, then repository: a completion looks at its own hash's only.
        self.commits: dict[str, dict[str, datetime]] = {}
        for (commit_hash, repository_id), committed in commits.items():
            self.commits.setdefault(commit_hash, {})[repository_id] = committed
        self.failing: dict[str, _Failing | None] = dict(failing)
        self.new_commits: dict[tuple[str, str], datetime] = {}
        self.recoveries: list[_Recovery] = []

    def evolve(self, event: RecordedEvent) -> None:
        at = event.recorded_at
        match event.event:
            case CommitObserved() as e:
                committed = commit_time(e.committed_at)
                known = self.commits.setdefault(e.commit_hash, {})
                if committed is not None and e.repository_id not in known:
                    known[e.repository_id] = committed
                    self.new_commits[(e.commit_hash, e.repository_id)] = committed
            case DeploymentTriggered() as e:
                if e.deployment_id not in self.deployments:
                    self.deployments[e.deployment_id] = _Deployment(
                        deployment_id=e.deployment_id,
                        application_id=e.application_id,
                        repository_id=e.repository_id,
                        commit_hash=e.commit_hash,
                        committed_at=commit_time(e.committed_at),
                        triggered_at=at,
                    )
            case DeploymentCompleted() as e:
                self._finish(e, at)
            case _:
                pass

    def _finish(self, e: DeploymentCompleted, at: datetime) -> None:
        # A completion never preceded by its trigger still counts: it has its application,
        # and its commit if the event says.
        row = self.deployments.get(e.deployment_id) or _Deployment(
            deployment_id=e.deployment_id,
            application_id=e.application_id,
            repository_id="",
            commit_hash=e.commit_hash,
        )
        self.deployments[e.deployment_id] = row
        if row.completed_at is not None:
            return  # completed before: only the first completion counts
        status = str(e.status)
        committed = row.committed_at or self._observed(row.commit_hash, row.repository_id)
        # A lead time below zero (a committer's clock ahead of ours) is not a lead time.
        lead = (
            (at - committed).total_seconds()
            if status == "SUCCESS" and committed is not None and committed <= at
            else None
        )
        self.deployments[e.deployment_id] = msgspec.structs.replace(
            row, status=status, completed_at=at, committed_at=committed, lead_time_s=lead
        )
        application_id = row.application_id
        streak = self.failing.get(application_id)
        if status == "FAILURE" and streak is None:  # the streak's first failure stays
            self.failing[application_id] = _Failing(e.deployment_id, at)
        elif status == "SUCCESS" and streak is not None:
            self.failing[application_id] = None
            self.recoveries.append(
                _Recovery(
                    e.deployment_id,
                    application_id,
                    streak.deployment_id,
                    streak.failed_at,
                    at,
                    max((at - streak.failed_at).total_seconds(), 0.0),
                )
            )

    def _observed(self, commit_hash: str, repository_id: str) -> datetime | None:
        known = self.commits.get(commit_hash, {})
        if repository_id:
            return known.get(repository_id)
        return min(known.values(), default=None)


class InsightsProjection(Projection):
    """Deployments' outcomes and lead times, and failure streaks with their recovery times."""

    name = "insights"
    version = 1
    tables = _TABLES
    event_types = _EVENTS

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Record a commit's time, a deployment's commit, or a deployment's outcome."""
        await self.apply_batch(conn, [event], tables)

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Fold the batch over the rows it touches in memory; write back what changed."""
        mine = [event for event in events if isinstance(event.event, _EVENTS)]
        if not mine:
            return
        names = {
            "deployments": quote(tables[DEPLOYMENTS]),
            "commits": quote(tables[COMMITS]),
            "failing": quote(tables[FAILING]),
            "recoveries": quote(tables[RECOVERIES]),
        }
        batch = await self._load(conn, names, mine)
        before_deployments = dict(batch.deployments)
        before_failing = dict(batch.failing)
        for event in mine:
            batch.evolve(event)
        if batch.new_commits:
            keys = list(batch.new_commits)
            await conn.execute(
                _WRITE_COMMITS.format(**names),
                [k[0] for k in keys],
                [k[1] for k in keys],
                [batch.new_commits[k] for k in keys],
            )
        rows = [row for key, row in batch.deployments.items() if row != before_deployments.get(key)]
        if rows:
            await conn.execute(
                _WRITE_DEPLOYMENTS.replace("{table}", names["deployments"]), rows_json(rows)
            )
        streaks = [app for app, f in batch.failing.items() if f != before_failing.get(app)]
        if streaks:
            await conn.execute(_CLEAR_FAILING.format(**names), streaks)
            now = [(app, f) for app in streaks if (f := batch.failing[app]) is not None]
            if now:
                await conn.execute(
                    _WRITE_FAILING.format(**names),
                    [app for app, _ in now],
                    [f.deployment_id for _, f in now],
                    [f.failed_at for _, f in now],
                )
        if batch.recoveries:
            await conn.execute(
                _WRITE_RECOVERIES.format(**names),
                *(
                    [getattr(r, field) for r in batch.recoveries]
                    for field in _Recovery.__struct_fields__
                ),
            )

    @staticmethod
    async def _load(
        conn: asyncpg.Connection, names: Mapping[str, str], events: Sequence[RecordedEvent]
    ) -> _Batch:
        """The stored rows the events may touch."""
        ids: set[str] = set()
        hashes: set[str] = set()
        applications: set[str] = set()
        for event in events:
            match event.event:
                case CommitObserved() as e:
                    hashes.add(e.commit_hash)
                case DeploymentTriggered() | DeploymentCompleted() as e:
                    ids.add(e.deployment_id)
                    hashes.add(e.commit_hash)
                    applications.add(e.application_id)
        stored = await conn.fetch(_READ_DEPLOYMENTS.format(**names), sorted(ids))
        deployments = {row["deployment_id"]: _Deployment(**dict(row)) for row in stored}
        hashes |= {d.commit_hash for d in deployments.values()}
        applications |= {d.application_id for d in deployments.values()}
        commits = {
            (row["commit_hash"], row["repository_id"]): row["committed_at"]
            for row in await conn.fetch(_READ_COMMITS.format(**names), sorted(hashes))
        }
        failing = {
            row["application_id"]: _Failing(row["deployment_id"], row["failed_at"])
            for row in await conn.fetch(_READ_FAILING.format(**names), sorted(applications))
        }
        return _Batch(deployments, commits, failing)
