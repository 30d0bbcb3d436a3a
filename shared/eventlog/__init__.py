"""The append-only event log in PostgreSQL (DESIGN §3).

`store.EventStore` is the one class callers use: its reads are `reading.EventReader`'s, its
appends run `appending`'s functions, and the SQL of both is in `statements`.
"""

from shared.eventlog.migrate import migrate
from shared.eventlog.position import START, LogPosition
from shared.eventlog.roles import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    DEFAULT_READER_ROLE,
    role_of_service,
)
from shared.eventlog.store import (
    ANY,
    NO_STREAM,
    AppendResult,
    EventStore,
    new_events,
    position_of,
)
from shared.ids import deterministic_event_id  # re-exported: where handlers look for it

__all__ = [
    "ANY",
    "DEFAULT_API_ROLE",
    "DEFAULT_APP_ROLE",
    "DEFAULT_PROJECTOR_ROLE",
    "DEFAULT_READER_ROLE",
    "NO_STREAM",
    "START",
    "AppendResult",
    "EventStore",
    "LogPosition",
    "deterministic_event_id",
    "migrate",
    "new_events",
    "position_of",
    "role_of_service",
]
