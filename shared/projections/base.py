"""What a projection is: a named, versioned fold of the log into tables.

A projection declares the tables it owns as DDL templates and applies events
to them. It never chooses table names itself: the runner and the replay pass
it the physical names of the generation being written (`tables[logical]`),
so the same code builds the live generation and a shadow one. It must be
deterministic — rows depend only on the events (use `recorded_at`, never
`now()`) — which is what lets a replay from position 0 equal the live result.

It need not be idempotent: each batch is applied in the same transaction as
the checkpoint that records it, so a batch is either applied once or not at
all.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence

import asyncpg

from shared.eventlog.position import LogPosition
from shared.events.base import Event, RecordedEnvelope, RecordedEvent
from shared.events.codec import tag_of

# Physical tables are `<table>_g<generation>`; leaving 12 characters for the
# suffix keeps them within PostgreSQL's 63-byte identifiers.
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
_GENERATION_SUFFIX = re.compile(r"_g[0-9]+$")


class Projection(abc.ABC):
    """A read model: `tables` it owns, and how each event changes them.

    Subclasses set `name` (the checkpoint's key), `version` (bump it when the
    tables or the fold change: a runner of a newer version rebuilds before it
    applies anything) and `tables`, which maps each logical table — also the
    name of the view readers query — to its DDL, with `{table}` standing for
    the physical table name (which may appear several times, e.g. in indexes).

    `event_types`, if set, are the only events `apply` changes anything for: a
    replay then reads just those from the log (most of a long log is stage
    events that few projections look at). `apply` must still ignore the others,
    which the live runner passes along with the rest. A projection that reads
    nothing but the envelope is an `EnvelopeProjection`, spared the payloads.
    """

    name: str
    version: int
    tables: Mapping[str, str]
    event_types: tuple[type[Event], ...] | None = None

    def replay_buffer(self) -> ReplayBuffer | None:
        """What folds one replay's windows, if not `apply_batch` window by window."""
        return None

    @abc.abstractmethod
    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Apply one event on `conn`, writing to the physical `tables[logical]`."""

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Apply events in log order; override to write a whole batch in fewer statements."""
        for event in events:
            await self.apply(conn, event, tables)


class ReplayBuffer(abc.ABC):
    """One replay's fold, for a projection whose rows change again and again over a long log
    (an application's sync state, at each of its deployments): it keeps such rows in memory
    across the windows of the log and writes each once (`flush`), where `apply_batch` would
    read and write it again in every window it appears in.

    A replay may defer its writes because the generation it builds is nobody's truth
    until the swap: a crash before it leaves a generation the next replay drops. The
    replay calls `flush` after its last window, before the swap's catch-up (which goes
    through `apply_batch`); a buffer may also flush itself to bound the memory it holds.
    The tables after `flush` must be those `apply_batch` would have built.
    """

    @abc.abstractmethod
    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Fold a window of the log, in log order, in the caller's transaction."""

    @abc.abstractmethod
    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        """Write what is held to `tables`, in the caller's transaction, and hold nothing."""


class EnvelopeProjection(Projection):
    """A projection whose rows depend only on each event's envelope (stream, version,
    position, type, time): replay and the live runner give it `RecordedEnvelope`s, read
    without the payload and metadata columns and never decoded, which is most of the cost
    of reading an event. Subclasses implement `apply_envelopes`; given whole events (which
    are envelopes too) they build the same rows."""

    @abc.abstractmethod
    async def apply_envelopes(
        self,
        conn: asyncpg.Connection,
        envelopes: Sequence[RecordedEnvelope],
        tables: Mapping[str, str],
    ) -> None:
        """Apply envelopes in log order, writing to the physical `tables[logical]`."""

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Apply one event's envelope."""
        await self.apply_envelopes(conn, [event], tables)

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Apply the events' envelopes."""
        await self.apply_envelopes(conn, events, tables)


class DatabaseFold(abc.ABC):
    """A projection whose rows PostgreSQL can fold from the log's own columns: a replay
    builds it with one statement per window of the log (`fold_window`), so no event
    leaves the database. The live runner and the swap's catch-up still go through
    `apply`/`apply_envelopes`, and both folds must give the same rows."""

    @abc.abstractmethod
    async def fold_window(
        self,
        conn: asyncpg.Connection,
        tables: Mapping[str, str],
        after: LogPosition,
        through: LogPosition,
    ) -> None:
        """Fold the log's events after `after` up to and including `through` (commit-safe
        order) into the physical `tables[logical]`, as applying them in that order would."""


def check_projection(projection: Projection) -> Projection:
    """`projection` if its name, version and tables are usable; ValueError naming the rule."""
    if not _NAME.match(projection.name):
        raise ValueError(
            f"projection name {projection.name!r} must be lowercase letters, digits and _"
        )
    if not isinstance(projection.version, int) or projection.version < 1:
        raise ValueError(f"projection {projection.name!r}: version must be an integer ≥ 1")
    if not projection.tables:
        raise ValueError(f"projection {projection.name!r} declares no tables")
    for logical, ddl in projection.tables.items():
        if not _NAME.match(logical) or _GENERATION_SUFFIX.search(logical):
            raise ValueError(
                f"projection {projection.name!r}: table name {logical!r} must be lowercase "
                "letters, digits and _ (at most 50), not ending in _g<number>"
            )
        if "{table}" not in ddl:
            raise ValueError(
                f"projection {projection.name!r}: the DDL of {logical!r} must use {{table}} "
                "for the table's name"
            )
    if isinstance(projection, EnvelopeProjection):
        # Replay and the runner call `apply_envelopes` alone: an override of the whole-event
        # methods would be skipped without a word.
        for method in ("apply", "apply_batch"):
            if getattr(type(projection), method) is not getattr(EnvelopeProjection, method):
                raise ValueError(
                    f"projection {projection.name!r} is an EnvelopeProjection but overrides "
                    f"{method}, which replay and the runner never call: override "
                    "apply_envelopes"
                )
    if projection.event_types is not None and not projection.event_types:
        raise ValueError(
            f"projection {projection.name!r}: event_types is empty (None means every event)"
        )
    return projection


def event_tags(projection: Projection) -> list[str] | None:
    """The stored `event_type`s of `projection.event_types`, sorted; None for every event."""
    if projection.event_types is None:
        return None
    return sorted({tag_of(event_type) for event_type in projection.event_types})


def check_unique(projections: Sequence[Projection]) -> None:
    """ValueError if two projections share a name or a table (their views would collide)."""
    names: set[str] = set()
    owners: dict[str, str] = {}
    for projection in projections:
        if projection.name in names:
            raise ValueError(f"two projections are named {projection.name!r}")
        names.add(projection.name)
        for logical in projection.tables:
            if logical in owners:
                raise ValueError(
                    f"table {logical!r} is declared by both {owners[logical]!r} and "
                    f"{projection.name!r}"
                )
            owners[logical] = projection.name
