"""The `stream_stats` read model: how many events each stream has, and its latest.

Cheap to keep and to check: every row must agree with a `GROUP BY stream_id`
over the log, which makes it the projection that replay and runner tests
compare against the log itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
import msgspec

from shared.eventlog.position import LogPosition
from shared.events.base import RecordedEnvelope
from shared.projections.base import DatabaseFold, EnvelopeProjection
from shared.projections.single_table import SingleTableProjection
from shared.streams import category_of

_DDL = """
CREATE TABLE {table} (
  stream_id          text        PRIMARY KEY,
  category           text        NOT NULL,
  events             bigint      NOT NULL,
  last_version       bigint      NOT NULL,
  last_position      bigint      NOT NULL,
  last_event_type    text        NOT NULL,
  first_recorded_at  timestamptz NOT NULL,
  last_recorded_at   timestamptz NOT NULL
);
CREATE INDEX ON {table} (category);
"""

_INSERT = """
INSERT INTO {table} AS s (stream_id, category, events, last_version, last_position,
                          last_event_type, first_recorded_at, last_recorded_at)
"""
# A stream seen before adds its count; its first record time stays.
_MERGE = """
ON CONFLICT (stream_id) DO UPDATE
  SET events = s.events + excluded.events, last_version = excluded.last_version,
      last_position = excluded.last_position, last_event_type = excluded.last_event_type,
      last_recorded_at = excluded.last_recorded_at
"""
_UPSERT = f"""{_INSERT}
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::text[], $7::timestamptz[], $8::timestamptz[])
{_MERGE}"""

# `apply_envelopes`' tally in SQL, over a window of the log: per stream, the count, the
# last event and the first record time in commit-safe order (tx_id, global_position), the
# order the live runner is given events in. The window's rows are all of a partition's,
# so DISTINCT ON may keep any row of it. `split_part` is `shared.streams.category_of`.
_FOLD_WINDOW = f"""{_INSERT}
SELECT DISTINCT ON (stream_id)
       stream_id, split_part(stream_id, '-', 1), count(*) OVER w,
       last_value(stream_version) OVER w, last_value(global_position) OVER w,
       last_value(event_type) OVER w, first_value(recorded_at) OVER w,
       last_value(recorded_at) OVER w
FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
  AND (tx_id, global_position) <= ($3::xid8, $4::bigint)
WINDOW w AS (PARTITION BY stream_id ORDER BY tx_id, global_position
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
ORDER BY stream_id
{_MERGE}"""


class _Tally(msgspec.Struct):
    events: int
    last: RecordedEnvelope
    first_recorded_at: datetime


class StreamStatsProjection(SingleTableProjection, EnvelopeProjection, DatabaseFold):
    """Per stream: event count, last version, position and type, first and last record time.

    Envelopes are all it reads; a replay folds it in PostgreSQL (`fold_window`), so no
    event even leaves the database."""

    name = "stream_stats"
    ddl = _DDL
    version = 1

    async def apply_envelopes(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEnvelope],
        tables: Mapping[str, str],
    ) -> None:
        """Count the events of a batch with one statement per stream."""
        # One statement per batch: tally in memory first, since an upsert may not
        # touch the same row twice. The log gives each stream's events in version order.
        tallies: dict[str, _Tally] = {}
        for event in events:
            tally = tallies.get(event.stream_id)
            if tally is None:
                tallies[event.stream_id] = _Tally(1, event, event.recorded_at)
            else:
                tally.events += 1
                tally.last = event
        if not tallies:
            return
        streams = list(tallies)
        rows = [tallies[s] for s in streams]
        await conn.execute(
            self.sql(_UPSERT, tables),
            streams,
            [category_of(s) for s in streams],
            [t.events for t in rows],
            [t.last.stream_version for t in rows],
            [t.last.global_position for t in rows],
            [t.last.event_type for t in rows],
            [t.first_recorded_at for t in rows],
            [t.last.recorded_at for t in rows],
        )

    async def fold_window(
        self,
        conn: asyncpg.Connection,
        tables: Mapping[str, str],
        after: LogPosition,
        through: LogPosition,
    ) -> None:
        """Count the window's events per stream in one INSERT … SELECT."""
        await conn.execute(
            self.sql(_FOLD_WINDOW, tables),
            after.tx_id,
            after.global_position,
            through.tx_id,
            through.global_position,
        )
