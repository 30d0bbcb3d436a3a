"""The one shape of a pure decider: an initial state, `evolve`, `decide` (STYLE.md).

    initial_state()                      the state of a stream with no events
    evolve(state, event) -> state        what one recorded fact does to it
    decide(state, command) -> events     what to record for a command, or `Rejected`

Everything here is pure: no await, clock, ids, environment or logging. Times and
ids arrive inside the command, so a decision can be replayed exactly. The shell
that loads a stream, folds it, decides and appends with the expected version is
`shared.eventlog.execute`, the same one for every service.

A decider is anything with these three methods (`Decider`, a protocol);
`Functions` makes one out of three module-level functions, which is how most
services write theirs. `OPENING` is the one every service shares: a stream
opened once by a given first event (a deployment's trigger, an analysis'
request), however many writers try.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar, cast

from shared.errors import Rejected
from shared.events.base import Event

__all__ = ["OPENING", "Decider", "Functions", "StreamTaken", "decide_open", "fold"]

S = TypeVar("S")
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


class Decider(Protocol[S, C_contra]):
    """Initial state, evolve and decide over one stream's events."""

    def initial_state(self) -> S:
        """The state before a stream's first event."""

    def evolve(self, state: S, event: Event) -> S:
        """The state after `event` (pure; never fails on an event it does not know)."""

    def decide(self, state: S, command: C_contra) -> Sequence[Event]:
        """The events `command` records (none: nothing to do); `Rejected` if not allowed."""


@dataclass(frozen=True)
class Functions(Generic[S, C]):
    """A `Decider` made of three plain functions (and a value for the initial state)."""

    initial: S
    evolve_fn: Callable[[S, Event], S]
    decide_fn: Callable[[S, C], Sequence[Event]]

    def initial_state(self) -> S:
        """The initial state given to the constructor."""
        return self.initial

    def evolve(self, state: S, event: Event) -> S:
        """Apply the evolve function."""
        return self.evolve_fn(state, event)

    def decide(self, state: S, command: C) -> Sequence[Event]:
        """Apply the decide function."""
        return self.decide_fn(state, command)


_INITIAL: Final = object()


def fold(decider: Decider[S, C], events: Iterable[Event], state: S | object = _INITIAL) -> S:
    """The state after `events`, from `state` (by default the decider's initial state)."""
    # A sentinel, not None: for some deciders None is a state (no application yet).
    current = decider.initial_state() if state is _INITIAL else cast(S, state)
    for event in events:
        current = decider.evolve(current, event)
    return current


# Opening a stream once -----------------------------------------------------------------


class StreamTaken(Rejected):
    """The stream was already opened by another event than the one appended."""


def _first_event(first: Event | None, event: Event) -> Event | None:
    return first if first is not None else event


def decide_open(first: Event | None, opening: Event) -> list[Event]:
    """Open a stream with `opening`, once however many writers try: nothing when the stream
    already starts with it, `StreamTaken` when it starts with anything else."""
    if first is None:
        return [opening]
    if first == opening:
        return []
    raise StreamTaken(f"the stream exists and starts with another {type(first).__name__}")


OPENING: Final = Functions[Event | None, Event](None, _first_event, decide_open)
"""A stream as its opener sees it: its first event, or None."""
