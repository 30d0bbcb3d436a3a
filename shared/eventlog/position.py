"""A place in the log, in commit-safe order; the versions an append may expect of a stream."""

from __future__ import annotations

import msgspec


class LogPosition(msgspec.Struct, frozen=True, order=True):
    """(tx_id, global_position): the order readers of the whole log go in.

    Sorting by the writing transaction's id first means a reader that stops at
    the snapshot horizon never has to come back for a row that committed late.
    """

    tx_id: int = 0
    global_position: int = 0


START = LogPosition(0, 0)

ANY: None = None
"""`expected_version=ANY`: append at the end, whatever the stream's version."""
NO_STREAM = -1
"""`expected_version=NO_STREAM`: the stream must not exist yet."""
