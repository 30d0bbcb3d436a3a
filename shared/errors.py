"""The one exception tree of Slipway.

```
SlipwayError
├── Rejected               a business rule said no: reply / emit, never retried
├── ConcurrencyConflict    the stream moved on: reload, decide again, retry
├── IdempotencyViolation   an event id was reused for a different event: a bug, never retried
├── Unavailable            transient infrastructure (database, NATS, a cluster): retry with back-off
├── ConfigError            bad configuration or settings: fail fast, naming file, line and field
└── MessageError           a message that can never be handled (garbage, unknown type): dead letter
    └── UnknownEventType
```

Adapters translate asyncpg / nats / kubernetes / httpx exceptions into this
tree at the boundary (`raise … from exc`), so the core never sees them.
"""

from __future__ import annotations


class SlipwayError(Exception):
    """Base of every error Slipway raises on purpose."""


class Rejected(SlipwayError):
    """A business rule refused a command."""


class ConcurrencyConflict(SlipwayError):
    """An append expected a stream version that is no longer current."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int | None = None):
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown" if actual_version is None else str(actual_version)
        super().__init__(
            f"stream {stream_id!r}: expected version {expected_version}, but it is at {actual}"
        )


class IdempotencyViolation(SlipwayError):
    """An event id already stored with a different stream, type or payload."""


class Unavailable(SlipwayError):
    """A dependency is down or timed out; the same call may succeed later."""


class ConfigError(SlipwayError):
    """Configuration or settings are wrong; the message names where and what."""


class MessageError(SlipwayError):
    """A message that cannot be decoded or handled, now or ever."""


class UnknownEventType(MessageError):
    """A stored or received event whose type no registry knows."""
