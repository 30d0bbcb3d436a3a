"""Stage logs: what a stage did, line by line, for people (DESIGN §3, §4).

Written by the executor (each stage's work) and the analysis service (each tick of
an ANALYSIS stage), read by the API and the CLI.

Each line is a row of the append-only `stage_logs` table (the record) and a
core NATS message on `<prefix>.log.<deployment_id>` (live tailing; a line
nobody listens to is simply not seen live, never lost). Publishing is best
effort: a NATS hiccup must not fail a stage that did its work.

Every line is recorded from outside in part (script output, tool and API errors), so
the writer is the stage logs' one choke point: each message is redacted
(`shared.redaction`), made printable (no NUL, no terminal control sequences) and cut
at `MAX_LINE_CHARS` before it is stored or published.
"""

from __future__ import annotations

import enum
from typing import Final

import asyncpg
import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from shared.db import CONNECTION_ERRORS
from shared.logs import get_logger
from shared.redaction import excerpt
from shared.subjects import Subjects

__all__ = ["MAX_LINE_CHARS", "Severity", "StageLogLine", "StageLogger", "StageLogs", "recordable"]

log = get_logger("slipway.stagelog")

_INSERT: Final = """
INSERT INTO stage_logs (deployment_id, stage_id, severity, message) VALUES ($1, $2, $3, $4)
RETURNING id, recorded_at
"""
_READ: Final = """
SELECT id, deployment_id, stage_id, severity, message, recorded_at FROM stage_logs
WHERE deployment_id = $1 AND ($2::text IS NULL OR stage_id = $2) ORDER BY id
"""

MAX_LINE_CHARS: Final = 8192
"""The longest line recorded (a safety net: a script's lines are cut shorter before)."""


def recordable(message: str) -> str:
    """`message` as a stage log records it: redacted, printable, one bounded line."""
    return excerpt(message, MAX_LINE_CHARS)


class Severity(enum.StrEnum):
    """A stage log line's severity."""

    INFO = "info"
    SUCCESS = "success"
    ERROR = "error"


class StageLogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line, as stored and as published."""

    id: int
    deployment_id: str
    stage_id: str
    severity: str
    message: str
    recorded_at: str  # ISO 8601


class StageLogs:
    """Where stage logs go: the table, and the live subject."""

    def __init__(self, pool: asyncpg.Pool, nc: NatsClient | None, subjects: Subjects) -> None:
        self.pool = pool
        self.nc = nc
        self.subjects = subjects
        self._encoder = msgspec.json.Encoder()

    def for_stage(self, deployment_id: str, stage_id: str) -> StageLogger:
        """A logger bound to one stage."""
        return StageLogger(self, deployment_id, stage_id)

    async def write(
        self, deployment_id: str, stage_id: str, severity: Severity, message: str
    ) -> None:
        """Store one line of a stage's log (redacted) and publish it live."""
        message = recordable(message)
        try:
            row = await self.pool.fetchrow(_INSERT, deployment_id, stage_id, str(severity), message)
        except CONNECTION_ERRORS as exc:
            # The stage goes on; its events still say what happened.
            log.warning("stage_log_not_stored", error=str(exc), message=message)
            return
        assert row is not None
        if self.nc is None or not self.nc.is_connected:
            return
        line = StageLogLine(
            id=row["id"],
            deployment_id=deployment_id,
            stage_id=stage_id,
            severity=str(severity),
            message=message,
            recorded_at=row["recorded_at"].isoformat(),
        )
        try:
            await self.nc.publish(
                self.subjects.stage_log(deployment_id), self._encoder.encode(line)
            )
        except NatsError as exc:
            log.debug("stage_log_not_published", error=str(exc))

    async def read(self, deployment_id: str, stage_id: str | None = None) -> list[StageLogLine]:
        """The stored lines of a deployment (or of one of its stages), in order."""
        rows = await self.pool.fetch(_READ, deployment_id, stage_id)
        return [
            StageLogLine(
                id=r["id"],
                deployment_id=r["deployment_id"],
                stage_id=r["stage_id"],
                severity=r["severity"],
                message=r["message"],
                recorded_at=r["recorded_at"].isoformat(),
            )
            for r in rows
        ]


class StageLogger:
    """The log of one stage of one deployment."""

    def __init__(self, logs: StageLogs, deployment_id: str, stage_id: str) -> None:
        self.logs = logs
        self.deployment_id = deployment_id
        self.stage_id = stage_id

    async def info(self, message: str) -> None:
        """Log an info line."""
        await self.logs.write(self.deployment_id, self.stage_id, Severity.INFO, message)

    async def success(self, message: str) -> None:
        """Log a success line."""
        await self.logs.write(self.deployment_id, self.stage_id, Severity.SUCCESS, message)

    async def error(self, message: str) -> None:
        """Log an error line."""
        await self.logs.write(self.deployment_id, self.stage_id, Severity.ERROR, message)
