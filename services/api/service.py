"""The async shell of the API's commands: load the stream, decide, append, retry on conflict.

Each attempt is one transaction: read the stream, fold it with `evolve`,
`decide`, append with the version that was read. A `ConcurrencyConflict`
(another writer got there first) starts a fresh attempt, which sees the
other write and decides again; that is also how the loser of two concurrent
registrations of one name ends up with `StateConflict("name_taken")`.

The events appended are read back inside the same transaction, so callers
get them as recorded (positions, `recorded_at`) to answer from, without
waiting for any projection.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

import msgspec

from services.api.decider import (
    ID_PATTERN,
    NAME_PATTERN,
    Command,
    DeleteApplication,
    NameHolder,
    RegisterApplication,
    ReserveName,
    TargetNotFound,
    application_stream,
    check_registration,
    config_stream,
    decide,
    decide_claim,
    decide_name,
    evolve_name,
    name_stream,
)
from shared.applications import application_of
from shared.db import unavailable_on_disconnect
from shared.errors import ConcurrencyConflict
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.eventlog.asof import fold
from shared.eventlog.store import Connection
from shared.events.base import Event, Metadata, RecordedEvent
from shared.logs import get_logger

__all__ = ["ApplicationCommands", "Outcome"]

log = get_logger(__name__)

_ID: Final = re.compile(ID_PATTERN)
_NAME: Final = re.compile(NAME_PATTERN)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The application stream after a command, and which of its events the command appended."""

    history: tuple[RecordedEvent, ...]
    appended: tuple[RecordedEvent, ...]


class ApplicationCommands:
    """Carries out application commands against the event store."""

    def __init__(self, store: EventStore, *, max_attempts: int = 5) -> None:
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
        configs = config_stream(command.repository_id, command.path, command.config_filename)
        stream = application_stream(command.application_id)

        async def attempt(conn: Connection) -> Outcome:
            taken, holder = await self._name_holder(names, conn)
            reserve = decide_name(
                holder, ReserveName(name=command.name, application_id=command.application_id)
            )
            claimed, config_holder = await self._name_holder(configs, conn)
            claim = decide_claim(config_holder, command)
            registered = decide(None, command)
            await self._append_after(names, taken, reserve, metadata, conn)
            await self._append_after(configs, claimed, claim, metadata, conn)
            await self._append_after(stream, (), registered, metadata, conn)
            return await self._read_back(stream, (), conn)

        return await self._attempts("register application", attempt)

    async def execute(self, command: Command, metadata: Metadata) -> Outcome:
        """Carry out a command on an existing application (disable, enable, sync)."""
        stream = application_stream(command.application_id)

        async def attempt(conn: Connection) -> Outcome:
            history = await self.store.read_stream(stream, conn=conn)
            events = decide(application_of(e.event for e in history), command)
            if not events:
                return Outcome(history=tuple(history), appended=())
            await self._append_after(stream, history, events, metadata, conn)
            return await self._read_back(stream, history, conn)

        return await self._attempts("change application", attempt)

    async def delete(self, command: DeleteApplication, metadata: Metadata) -> Outcome:
        """Delete the application and release its name, in one transaction.

        The `ApplicationDeleted` is appended to the application's stream and to
        its name's and config file's streams (where it frees them for a new registration).
        """
        stream = application_stream(command.application_id)

        async def attempt(conn: Connection) -> Outcome:
            history = await self.store.read_stream(stream, conn=conn)
            state = application_of(e.event for e in history)
            events = decide(state, command)
            await self._append_after(stream, history, events, metadata, conn)
            assert state is not None, "decide refuses to delete what is not registered"
            held = (
                name_stream(state.name),
                config_stream(state.repository_id, state.path, state.config_filename),
            )
            for reservation in held:
                taken, holder = await self._name_holder(reservation, conn)
                # An application registered before config claims existed holds none.
                if holder is not None and holder.application_id == state.application_id:
                    await self._append_after(reservation, taken, events, metadata, conn)
            return await self._read_back(stream, history, conn)

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
        """Run `attempt` in a transaction of its own until it commits without a conflict."""
        for number in range(1, self.max_attempts + 1):
            try:
                async with self._transaction(what) as conn:
                    return await attempt(conn)
            except ConcurrencyConflict as exc:
                _retry_or_raise(exc, number, self.max_attempts)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _read_back(
        self, stream: str, history: Sequence[RecordedEvent], conn: Connection
    ) -> Outcome:
        """`history` and what this transaction appended after it, as recorded (positions, times)."""
        appended = await self.store.read_stream(stream, from_version=len(history), conn=conn)
        return Outcome(history=(*history, *appended), appended=tuple(appended))

    async def _append_after(
        self,
        stream: str,
        history: Sequence[RecordedEvent],
        events: Sequence[Event],
        metadata: Metadata,
        conn: Connection,
    ) -> None:
        """Append `events` to `stream`, expecting it as read (`history`): else a conflict."""
        await self.store.append(
            stream,
            new_events(events, metadata=metadata),
            expected_version=_last_version(history),
            conn=conn,
        )

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


def _last_version(history: Sequence[RecordedEvent]) -> int:
    # Versions are 0-based and gap-free, so the last one is the length less one.
    return history[-1].stream_version if history else NO_STREAM


def _retry_or_raise(exc: ConcurrencyConflict, attempt: int, max_attempts: int) -> None:
    if attempt >= max_attempts:
        raise exc
    log.info("command_conflict_retrying", stream_id=exc.stream_id, attempt=attempt)
