"""The one exception tree of Slipway.

```
SlipwayError
├── Rejected               a business rule said no: reply / emit, never retried
├── ConcurrencyConflict    the stream moved on: reload, decide again, retry
├── IdempotencyViolation   an event id was reused for a different event: a bug, never retried
├── Unavailable            transient infrastructure (database, NATS, a cluster): retry with back-off
├── ConfigError            bad configuration or settings: fail fast, naming file, line and field
├── MessageError           a message that can never be handled (garbage, unknown type): dead letter
│   ├── UnknownEventType
│   └── EventTooLarge      an encoded event over the append cap: truncate at the source
└── PlatformError          a cluster refused or failed an operation; names `Kind namespace/name`
    ├── Forbidden          (also Rejected) RBAC or admission said no: fix permissions, no retry
    ├── Invalid            (also Rejected) the object is malformed: fix the manifest, no retry
    ├── NotFound           the object, its namespace or its kind does not exist
    ├── ResourceConflict   the object changed underneath or another manager owns a field: re-read
    ├── RolloutFailed      a workload did not become healthy within its progress deadline
    └── PlatformUnavailable  (also Unavailable) cluster unreachable, timed out, 5xx: retry
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


class EventTooLarge(MessageError):
    """An encoded event over the store's size cap; nothing of its batch was written.

    Retrying cannot help: the source must shorten what it records (see `shared.redaction.clip`).
    """

    def __init__(self, event_type: str, stream_id: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.stream_id = stream_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"event {event_type!r} for stream {stream_id!r} is {size} bytes encoded, over the "
            f"cap of {limit} bytes (SLIPWAY_EVENT_MAX_BYTES); nothing was appended"
        )


class PlatformError(SlipwayError):
    """A platform (a Kubernetes cluster) refused or failed an operation on a named resource.

    `resource` is `Kind namespace/name` (or `Kind name` when cluster-scoped), `reason`
    the server's machine-readable reason (`Forbidden`, `Invalid`, …) and `code` its
    HTTP status, 0 when nothing answered.
    """

    def __init__(self, message: str, *, resource: str = "", reason: str = "", code: int = 0):
        self.resource = resource
        self.reason = reason
        self.code = code
        super().__init__(message)


class Forbidden(PlatformError, Rejected):
    """The cluster's RBAC or an admission webhook refused the operation."""


class Invalid(PlatformError, Rejected):
    """The cluster rejected the object as malformed (422 Invalid, 400 BadRequest)."""


class NotFound(PlatformError):
    """The object, its namespace, or its kind (a missing CRD) does not exist."""


class ResourceConflict(PlatformError):
    """The object changed underneath us or another field manager owns a field we set."""


class RolloutFailed(PlatformError):
    """A workload did not become healthy: its progress deadline passed, or our timeout did."""


class PlatformUnavailable(PlatformError, Unavailable):
    """The cluster could not be reached, timed out, or failed on its side (5xx, 429)."""
