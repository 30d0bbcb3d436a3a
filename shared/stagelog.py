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

A writer may batch (`batch_window_s` > 0, the executor's): lines are buffered and
stored together, in one statement and one transaction, when `flush` is called or at
the latest `batch_window_s` after the oldest buffered line (live tailing lags by that
much at most). A writer that appends events about a stage calls `flush` first, so a
stage's lines are stored before its `StageCompleted` (DESIGN §3: the log of a finished
stage is complete). The analysis service writes unbatched: its lines precede a
`StageCompleted` that another process appends.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
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
INSERT INTO stage_logs (deployment_id, stage_id, severity, message)
SELECT d, s, v, m FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
  WITH ORDINALITY AS line(d, s, v, m, n)
ORDER BY n
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


@dataclass(frozen=True, slots=True)
class _Pending:
    """A line not stored yet (already made recordable)."""

    deployment_id: str
    stage_id: str
    severity: str
    message: str


def _log_failed_flush(task: asyncio.Task[None]) -> None:
    """A timed flush has no caller to raise to: its failure is logged, not left unretrieved."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("stage_log_flush_failed", error=str(exc), error_type=type(exc).__name__)


class StageLogs:
    """Where stage logs go: the table, and the live subject."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: NatsClient | None,
        subjects: Subjects,
        *,
        batch_window_s: float = 0.0,
    ) -> None:
        self.pool = pool
        self.nc = nc
        self.subjects = subjects
        self.batch_window_s = batch_window_s
        self._encoder = msgspec.json.Encoder()
        self._pending: list[_Pending] = []
        # One flush at a time: lines are stored (and get their ids) in the order written.
        self._flush_lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timed_flush: asyncio.Task[None] | None = None

    def for_stage(self, deployment_id: str, stage_id: str) -> StageLogger:
        """A logger bound to one stage."""
        return StageLogger(self, deployment_id, stage_id)

    async def write(
        self, deployment_id: str, stage_id: str, severity: Severity, message: str
    ) -> None:
        """Store one line of a stage's log (redacted) and publish it live; a batching
        writer only buffers it (stored by the next `flush`, within `batch_window_s`)."""
        self._pending.append(_Pending(deployment_id, stage_id, str(severity), recordable(message)))
        if self.batch_window_s <= 0:
            await self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.batch_window_s, self._flush_when_due)

    def _flush_when_due(self) -> None:
        self._timer = None
        if self._timed_flush is None or self._timed_flush.done():
            self._timed_flush = asyncio.get_running_loop().create_task(self.flush())
            self._timed_flush.add_done_callback(_log_failed_flush)

    async def flush(self) -> None:
        """Store every buffered line, in one statement, and publish them live."""
        async with self._flush_lock:
            lines, self._pending = self._pending, []
            if not lines:
                return
            try:
                rows = await self.pool.fetch(
                    _INSERT,
                    [line.deployment_id for line in lines],
                    [line.stage_id for line in lines],
                    [line.severity for line in lines],
                    [line.message for line in lines],
                )
            except CONNECTION_ERRORS as exc:
                # The stage goes on; its events still say what happened.
                log.warning("stage_log_not_stored", error=str(exc), lines=len(lines))
                return
        # Identities are drawn in the lines' order, so the ids sort the rows back into it.
        await self._publish(lines, sorted(rows, key=lambda row: row["id"]))

    async def _publish(self, lines: list[_Pending], rows: list[asyncpg.Record]) -> None:
        if self.nc is None or not self.nc.is_connected:
            return
        for line, row in zip(lines, rows, strict=True):
            stored = StageLogLine(
                id=row["id"],
                deployment_id=line.deployment_id,
                stage_id=line.stage_id,
                severity=line.severity,
                message=line.message,
                recorded_at=row["recorded_at"].isoformat(),
            )
            try:
                await self.nc.publish(
                    self.subjects.stage_log(line.deployment_id), self._encoder.encode(stored)
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
