"""What a consumer did since it started: one counter record its parts all add to."""

from __future__ import annotations

import msgspec

__all__ = ["ConsumerStats"]


class ConsumerStats(msgspec.Struct):
    """What a consumer did since it started (for tests, benchmarks and health)."""

    handled: int = 0
    skipped_duplicates: int = 0
    retried: int = 0
    """Deliveries nak'ed to be tried again, for any reason."""
    dead_lettered: int = 0
    forged: int = 0
    waited_out: int = 0
    """Of those, the ones nak'ed for an outage (not counted towards `max_deliver`)."""
    settle_errors: int = 0
    inbox_pruned: int = 0
    redriven: int = 0
    handled_alone: int = 0
    """Events whose handler asked for a transaction of their own (`HandleAlone`)."""
