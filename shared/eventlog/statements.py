"""The event store's SQL statements, each with why it is written as it is.

`appending.py` runs the appends' statements and `reading.py` the reads'; the ordering and
locking they rely on is described in store.py's docstring (commit order and gaps, group commit).
"""

from __future__ import annotations

from typing import Final, TypeAlias

import asyncpg

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy"
"""What a statement runs on: a connection of its own or one of a pool."""

# One append's rows, from the `head` (the stream's last version and its transaction) that
# the statement's CTEs compute: the same in `APPEND` and `APPEND_BOUNDED`.
_INTO_ONE_STREAM = """\
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
SELECT $1, head.version + e.ord, e.event_id, e.event_type, e.schema_version,
       e.payload, e.metadata
FROM head,
     unnest($3::uuid[], $4::text[], $5::int2[], $6::bytea[], $7::jsonb[])
       WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ord)
WHERE ($2::bigint IS NULL OR head.version = $2::bigint)
  AND (head.tx_id IS NULL OR head.tx_id <= pg_current_xact_id())
"""

APPEND = (
    """
WITH last AS (
  SELECT stream_version, tx_id FROM events
  WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
), head AS (
  SELECT coalesce((SELECT stream_version FROM last), -1) AS version,
         (SELECT tx_id FROM last) AS tx_id
)
"""
    + _INTO_ONE_STREAM
    + "RETURNING global_position, stream_version\n"
)

# `APPEND` for several streams at once: $1/$2 one element per append (stream, expected
# version), $3.. one element per event (its append's number, its place in that append).
# `appended` is MATERIALIZED so that it is computed once and joined by hash: inlined, the
# planner's generic plan (the one a prepared statement runs) made it the outer side of a
# nested loop that unnested every event array once per append — quadratic in the group's
# size (measured: 64 concurrent writers, 9,600 appends/s before, 14,300 after).
_APPEND_GROUP_OF = """
WITH {settings}appended AS MATERIALIZED (
  SELECT a.n, a.stream_id, coalesce(last.stream_version, -1) AS version
  FROM {settings_from}unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS a(stream_id, expected, n)
       LEFT JOIN LATERAL (
         SELECT stream_version, tx_id FROM events
         WHERE events.stream_id = a.stream_id ORDER BY stream_version DESC LIMIT 1
       ) AS last ON true
  WHERE (a.expected IS NULL OR coalesce(last.stream_version, -1) = a.expected)
    AND (last.tx_id IS NULL OR last.tx_id <= pg_current_xact_id())
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
SELECT appended.stream_id, appended.version + e.ord, e.event_id, e.event_type,
       e.schema_version, e.payload, e.metadata
FROM unnest($3::bigint[], $4::bigint[], $5::uuid[], $6::text[], $7::int2[], $8::bytea[],
            $9::jsonb[]) AS e(n, ord, event_id, event_type, schema_version, payload, metadata)
JOIN appended ON appended.n = e.n
ORDER BY e.n, e.ord
RETURNING global_position, stream_id, stream_version
"""
# Group commit's: `settings` is read before any row is produced, so the lock timeout ($10)
# is set before the first insert can wait; `set_config(…, true)` lasts for this statement's
# transaction only.
APPEND_GROUP = _APPEND_GROUP_OF.format(
    settings="settings AS MATERIALIZED (\n"
    "  SELECT set_config('lock_timeout', $10::text, true)\n), ",
    settings_from="settings, ",
)
# `append_together`'s, in the caller's transaction: no lock timeout of its own (it would
# last for the rest of the caller's transaction), as `APPEND` there.
APPEND_GROUP_IN_TRANSACTION = _APPEND_GROUP_OF.format(settings="", settings_from="")

# `APPEND` with `APPEND_GROUP`'s lock timeout ($8), for a group of one: as cheap as
# `APPEND` (the group statement's arrays and sort cost a single writer about a millisecond).
APPEND_BOUNDED = (
    """
WITH settings AS MATERIALIZED (
  SELECT set_config('lock_timeout', $8::text, true)
), last AS (
  SELECT stream_version, tx_id FROM events
  WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
), head AS (
  SELECT coalesce((SELECT stream_version FROM last), -1) AS version,
         (SELECT tx_id FROM last) AS tx_id
  FROM settings
)
"""
    + _INTO_ONE_STREAM
    + "RETURNING global_position, stream_id, stream_version\n"
)

HEAD = """
SELECT stream_version, tx_id, pg_current_xact_id_if_assigned() AS own_tx
FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
"""

ROW_COLUMNS: Final = """global_position, tx_id, stream_id, stream_version, event_id, event_type,
schema_version, payload, metadata, recorded_at"""
"""The columns of `events` that `EventStore.decode_row` reads, for a query that joins the log."""
# What `RecordedEnvelope` holds: a fold that needs no more is not sent the payloads.
ENVELOPE_COLUMNS = """global_position, tx_id, stream_id, stream_version, event_id,
event_type, schema_version, recorded_at"""

READ_STREAM = f"""
SELECT {ROW_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version >= $2
  AND ($3::bigint IS NULL OR global_position <= $3::bigint)
  AND ($4::timestamptz IS NULL OR recorded_at <= $4::timestamptz)
ORDER BY stream_version
LIMIT $5::bigint
"""

_READ_ALL_OF = """
SELECT {columns} FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, global_position
LIMIT $3
"""
READ_ALL = _READ_ALL_OF.format(columns=ROW_COLUMNS)
READ_ALL_ENVELOPES = _READ_ALL_OF.format(columns=ENVELOPE_COLUMNS)

# A rebuild reads the log in windows of a fixed number of events below a horizon it
# read once. Reading only some event types, the window's last position and size come
# from the commit-order index alone (`window_end`), so the checkpoint moves past the
# events a projection ignores without shipping them to the client. (Two queries: one
# that numbered the window's rows to keep its last was ten times slower than both.)
_READ_BELOW_OF = """
SELECT {columns} FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
ORDER BY tx_id, global_position
LIMIT $4
"""
_READ_TYPES_OF = "SELECT * FROM ({below}) AS w WHERE event_type = ANY($5::text[])"
# (read everything, read some types) for whole events and for envelopes alone.
WINDOW_SQL = {
    columns: (
        _READ_BELOW_OF.format(columns=columns),
        _READ_TYPES_OF.format(below=_READ_BELOW_OF.format(columns=columns)),
    )
    for columns in (ROW_COLUMNS, ENVELOPE_COLUMNS)
}
# A full window's last row, found by skipping over the index: a fraction of `WINDOW_END`'s
# cost, which counts and sorts the window; that one is left for the log's last window.
FULL_WINDOW_END = """
SELECT tx_id, global_position FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
ORDER BY tx_id, global_position
OFFSET $4::bigint - 1 LIMIT 1
"""
WINDOW_END = """
SELECT tx_id, global_position, count(*) OVER () AS scanned FROM (
  SELECT tx_id, global_position FROM events
  WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
  ORDER BY tx_id, global_position
  LIMIT $4
) AS w
ORDER BY tx_id DESC, global_position DESC
LIMIT 1
"""

STORED = """
SELECT event_id, stream_id, stream_version, event_type, payload, global_position
FROM events WHERE event_id = ANY($1::uuid[])
"""

# An index scan of `events_event_id_unique`: one read per consumed batch.
BY_IDS = f"SELECT {ROW_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[])"

ANY_STORED = "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($1::uuid[]))"

# Each stream's newest event: one backward step of `events_stream_version_unique` per stream.
LAST_OF_STREAMS = f"""
SELECT e.* FROM unnest($1::text[]) AS s(stream_id)
CROSS JOIN LATERAL (
  SELECT {ROW_COLUMNS} FROM events WHERE stream_id = s.stream_id
  ORDER BY stream_version DESC LIMIT 1
) AS e
"""

# The first events of several streams from a version each, at most $3 per stream, in one
# round trip: the tails after the snapshots of a batch of short streams.
READ_STREAMS_FROM = f"""
SELECT e.* FROM unnest($1::text[], $2::bigint[]) AS s(stream_id, first)
CROSS JOIN LATERAL (
  SELECT {ROW_COLUMNS} FROM events WHERE stream_id = s.stream_id AND stream_version >= s.first
  ORDER BY stream_version LIMIT $3::bigint
) AS e
ORDER BY e.stream_id, e.stream_version
"""

STREAM_VERSION = "SELECT max(stream_version) FROM events WHERE stream_id = $1"
