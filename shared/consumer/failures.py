"""Which failures a consumer waits out, and how it counts the others.

Outages are waited out, not counted: a failure that is unavailability (see
`is_unavailable`: `Unavailable` and its kinds — PostgreSQL, Kubernetes API,
git remote — asyncpg connection errors, NATS connection errors, timeouts) is
nak'ed with back-off (by delivery, capped at the last step) and never
dead-letters the message, however often it is redelivered. `num_delivered`
counts those deliveries too, so it is not what decides: `FailureCounts` keeps
the *real* handler failures of each message (by stream sequence) and the
consumer dead-letters at `max_deliver` of them. Caveat: an `OSError` or
`TimeoutError` a handler raises for a reason of its own is taken for an outage too.
The count is per process (a restart or another replica starts it again),
which can only delay a dead letter, never cause a wrong one.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats import errors as nats_errors
from nats.js import errors as js_errors

from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable

NATS_RECONNECTING: tuple[type[BaseException], ...] = (
    nats_errors.NoServersError,
    nats_errors.StaleConnectionError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.NoRespondersError,
    nats_errors.ConnectionReconnectingError,
    # JetStream's 503 while a restarted server has not yet recovered its streams.
    js_errors.ServiceUnavailableError,
)
"""NATS is away for now; the client is reconnecting (or the server is still starting)."""
_NATS_UNAVAILABLE = (*NATS_RECONNECTING, nats_errors.ConnectionClosedError)

DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (Unavailable, *CONNECTION_ERRORS)

TRACKED_FAILURES = 10_000
"""How many messages' real-failure counts a consumer keeps (the oldest are forgotten)."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or its cause) says a dependency is down rather than the handler wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (Unavailable, *CONNECTION_ERRORS, *_NATS_UNAVAILABLE)):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def backoff_delay(backoff_s: Sequence[float], attempt: int) -> float:
    """The delay before retry `attempt` (1-based): the back-off's step, capped at its last."""
    return backoff_s[min(max(attempt, 1) - 1, len(backoff_s) - 1)]


class FailureCounts:
    """Real handler failures per message (stream sequence), bounded to the newest ones."""

    def __init__(self, limit: int = TRACKED_FAILURES) -> None:
        self._limit = limit
        self._counts: dict[int, int] = {}

    def add(self, seq: int) -> int:
        """Count one more failure of the message at `seq`; how many it has had."""
        failures = self._counts.pop(seq, 0) + 1
        self._counts[seq] = failures
        if len(self._counts) > self._limit:
            del self._counts[next(iter(self._counts))]
        return failures

    def __bool__(self) -> bool:
        return bool(self._counts)

    def forget(self, seq: int) -> None:
        """The message at `seq` is settled (handled or dead-lettered): stop counting it."""
        self._counts.pop(seq, None)
