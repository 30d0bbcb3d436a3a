"""Rows sent to PostgreSQL as one JSON array: how projections write a batch of rows.

A batch written as one array parameter per column (`unnest($1::text[], …)`) costs
asyncpg a type check and an encoding in Python for every value — most of a replay's
client CPU once the fold itself was batched. msgspec encodes the same rows as one
JSON document in C, and `json_populate_recordset` turns it back into rows of the
table's own type on the server, so each field is parsed into its column's type
there.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["rows_json", "upsert_from_json"]

_encoder = msgspec.json.Encoder()


def rows_json(rows: Sequence[msgspec.Struct]) -> str:
    """`rows` as a JSON array of objects keyed by field name, for `upsert_from_json`."""
    return _encoder.encode(rows).decode()


def upsert_from_json(columns: Sequence[str], key: str, *, update: Sequence[str] = ()) -> str:
    """An INSERT of the rows of `$1` (`rows_json`) into `{table}`, with `update`'s columns
    (all but `key` when empty) set from the new row when `key` exists. Each column of
    `columns` is a field of the rows and a column of the table."""
    listed = ", ".join(columns)
    changed = update or [c for c in columns if c != key]
    return (
        f"INSERT INTO {{table}} ({listed}) "
        f"SELECT {listed} FROM json_populate_recordset(NULL::{{table}}, $1::json) "
        f"ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in changed)
    )
