"""The async shell of the API's commands: load the stream, decide, append, retry on conflict.

Each attempt is one transaction of `shared.eventlog.execute` rounds (read the
stream, fold it, decide, append with the version that was read), one per
stream the command writes. A `ConcurrencyConflict`
(another writer got there first) starts a fresh attempt, which sees the
other write and decides again; that is also how the loser of two concurrent
registrations of one name ends up with `StateConflict("name_taken")`.

The application stream is read from its snapshot (`shared.snapshots`) and
the events after it: a command costs the same however many syncs the
application has had. The events appended are read back inside the same
transaction, so callers get them as recorded (positions, `recorded_at`) to
answer from, without waiting for any projection.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeVar

import msgspec

from services.api.decider import (
    APPLICATION,
    CONFIG_CLAIM,
    ID_PATTERN,
    NAME,
    NAME_PATTERN,
    RELEASE,
    Command,
    DeleteApplication,
    NameHolder,
    RegisterApplication,
    ReserveName,
    TargetNotFound,
    check_registration,
    evolve_name,
)
from shared.applications import RecordedApplication, fold_recorded
from shared.db import unavailable_on_disconnect
from shared.decider import Decider
from shared.eventlog import NO_STREAM, EventStore
from shared.eventlog.asof import fold
from shared.eventlog.execute import (
    DEFAULT_ATTEMPTS,
    Executed,
    Folded,
    execute,
    retry_on_conflict,
)
from shared.eventlog.store import Connection
from shared.events.base import Metadata, RecordedEvent
from shared.events.catalog import ApplicationDeleted
from shared.events.streams import application_stream, config_claim_stream, name_stream
from shared.logs import get_logger
from shared.snapshots import read_state
from shared.stream_folds import APPLICATION as APPLICATION_STREAM

__all__ = ["ApplicationCommands", "Outcome"]

log = get_logger(__name__)

S = TypeVar("S")
C = TypeVar("C")

_ID: Final = re.compile(ID_PATTERN)
_NAME: Final = re.compile(NAME_PATTERN)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The application before and after a command (its stream folded with the log's places
    and times: None when not registered), and the events the command appended."""

    before: RecordedApplication | None
    after: RecordedApplication | None
    appended: tuple[RecordedEvent, ...]


class ApplicationCommands:
    """Carries out application commands against the event store."""

    def __init__(self, store: EventStore, *, max_attempts: int = DEFAULT_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be ≥ 1")
        self.store = store
        self.max_attempts = max_attempts

    async def register(self, command: RegisterApplication, metadata: Metadata) -> Outcome:
        """Reserve the name, claim the config file and register the application, in one
        transaction."""
        # Malformed input is refused before the name is looked at: a 400 names the
        # field even when the name is also taken.
        check_registration(command)
        names = name_stream(command.name)
        configs = config_claim_stream(command.repository_id, command.path, command.config_filename)
        stream = application_stream(command.application_id)
        reserve = ReserveName(name=command.name, application_id=command.application_id)

        async def attempt(conn: Connection) -> Outcome:
            # In this order, so a taken name is the refusal even when the file is claimed too.
            await self._once(names, NAME, reserve, metadata, conn)
            await self._once(configs, CONFIG_CLAIM, command, metadata, conn)
            return await self._on_application(stream, command, metadata, conn)

        return await self._attempts("register application", attempt)

    async def execute(self, command: Command, metadata: Metadata) -> Outcome:
        """Carry out a command on an existing application (disable, enable, sync)."""
        stream = application_stream(command.application_id)

        async def attempt(conn: Connection) -> Outcome:
            return await self._on_application(stream, command, metadata, conn)

        return await self._attempts("change application", attempt)

    async def delete(self, command: DeleteApplication, metadata: Metadata) -> Outcome:
        """Delete the application and release its name, in one transaction.

        The `ApplicationDeleted` is appended to the application's stream and to
        its name's and config file's streams (where it frees them for a new registration).
        """
        stream = application_stream(command.application_id)

        async def attempt(conn: Connection) -> Outcome:
            deleted = await self._on_application(stream, command, metadata, conn)
            state = deleted.before.application if deleted.before else None
            assert state is not None, "decide refuses to delete what is not registered"
            (recorded,) = deleted.appended
            event = recorded.event
            assert isinstance(event, ApplicationDeleted)
            for held in (
                name_stream(state.name),
                config_claim_stream(state.repository_id, state.path, state.config_filename),
            ):
                await self._once(held, RELEASE, event, metadata, conn)
            return deleted

        return await self._attempts("delete application", attempt)

    async def resolve(self, ref: str) -> str:
        """The id of the application whose id or name is `ref`; `TargetNotFound` if there is none.

        Strongly consistent (it reads the log, not a projection), so a command
        can name an application registered a moment ago.
        """
        if _ID.fullmatch(ref):
            async with unavailable_on_disconnect("resolve application"):
                version = await self.store.stream_version(application_stream(ref))
            if version != NO_STREAM:
                return ref
        if _NAME.fullmatch(ref):
            _, holder = await self._name_holder(name_stream(ref))
            if holder is not None:
                return holder.application_id
        raise TargetNotFound(f"no application with the id or name {ref!r}")

    async def _attempts(
        self, what: str, attempt: Callable[[Connection], Awaitable[Outcome]]
    ) -> Outcome:
        """Run `attempt` in a transaction of its own until it commits without a conflict:
        an append refused for a newer writer's transaction only succeeds in a new one."""

        async def in_transaction() -> Outcome:
            async with self._transaction(what) as conn:
                return await attempt(conn)

        return await retry_on_conflict(in_transaction, max_attempts=self.max_attempts)

    async def _once(
        self,
        stream: str,
        decider: Decider[S, C],
        command: C,
        metadata: Metadata,
        conn: Connection,
    ) -> Executed[S]:
        # One round inside the caller's transaction: a conflict aborts the whole attempt.
        return await execute(
            self.store, stream, decider, command, metadata, conn=conn, max_attempts=1
        )

    async def _on_application(
        self, stream: str, command: Command, metadata: Metadata, conn: Connection
    ) -> Outcome:
        """Decide `command` on the application stream and append what it gives, reading the
        stream from its snapshot (`shared.snapshots`: a long-synced application's stream is
        long) and the events after it, which are read once more after the append to answer
        with them as recorded (positions, times). The snapshot is read outside the
        transaction: the log is append-only, so it is a prefix of what the transaction sees,
        and the append still expects the version the transaction read."""
        read = await read_state(self.store, stream, APPLICATION_STREAM)
        start = None
        if read.state is not None:
            start = Folded(read.state.application, read.version)
        done = await execute(
            self.store, stream, APPLICATION, command, metadata, conn=conn, max_attempts=1,
            start=start,
        )  # fmt: skip
        tail = await self.store.read_stream(stream, from_version=read.version + 1, conn=conn)
        before = [e for e in tail if e.stream_version <= done.before.version]
        appended = tuple(e for e in tail if e.stream_version > done.before.version)
        folded = fold_recorded(before, read.state)
        return Outcome(before=folded, after=fold_recorded(appended, folded), appended=appended)

    async def _name_holder(
        self, names: str, conn: Connection | None = None
    ) -> tuple[list[RecordedEvent], NameHolder | None]:
        """The name stream's events, and who holds the name now (None: it is free)."""
        taken = await self.store.read_stream(names, conn=conn)
        return taken, fold(evolve_name, None, (e.event for e in taken))

    @contextlib.asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[Connection]:
        async with (
            unavailable_on_disconnect(what),
            self.store.pool.acquire() as conn,
            conn.transaction(),
        ):
            yield conn
