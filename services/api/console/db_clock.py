"""The console's time: the database's, as this replica last read it (pure: no I/O).

API replicas' clocks need not agree; PostgreSQL's clock is one for all of them.
Whatever the console decides across replicas (which session key signs, which
still verify, when one is deleted; when a cookie or an OIDC sign-in expires; an
OIDC role check's claim) is decided on it. A statement that decides reads
`clock_timestamp()` with its answer and hands it to `saw`; between reads,
`now` carries the last one forward on this replica's monotonic clock (which
only has to count seconds, not agree with anyone).

The replica's own clock only serves to warn, once, when it is off from the
database's by more than `SKEW_WARN_S`: a sign that its time sync is broken,
though nothing here depends on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from shared.logs import get_logger

__all__ = ["SKEW_WARN_S", "DatabaseClock"]

log = get_logger(__name__)

SKEW_WARN_S: Final = 5.0
"""A replica's clock this far off the database's is worth a warning (no decision reads it)."""


class DatabaseClock:
    """The database's time on this replica: `saw` each time a statement reads it, `now` in
    between. `replica_clock`: this replica's wall clock, compared with the database's only
    to warn; `monotonic`: what carries the database's time forward between reads."""

    def __init__(
        self,
        replica_clock: Callable[[], float] = time.time,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._replica_clock = replica_clock
        self._monotonic = monotonic
        self._offset: float | None = None
        """The database's time minus the monotonic clock, at the last read."""
        self._warned = False

    def saw(self, db_now: float) -> None:
        """A statement just read the database's time (Unix seconds) as `db_now`."""
        self._offset = db_now - self._monotonic()
        ahead = self._replica_clock() - db_now
        if abs(ahead) > SKEW_WARN_S and not self._warned:
            self._warned = True
            log.warning("console_clock_off_from_the_database", ahead_s=round(ahead, 1))

    def now(self) -> float:
        """The database's time now (Unix seconds). Before any read (the console signs with a
        fixed `SLIPWAY_CONSOLE_SESSION_KEY` and has no OIDC: nothing to share), the replica's."""
        if self._offset is None:
            return self._replica_clock()
        return self._monotonic() + self._offset
