"""An application's state, folded from its own stream: the api owns it, the planner reads it.

Pure, like a decider's `evolve`: no I/O, clock or logging. `None` stands for
an application not registered (the initial state).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import msgspec

from shared.events.base import Event
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
)

__all__ = ["Application", "application_of", "evolve"]


class Application(msgspec.Struct, frozen=True, kw_only=True):
    """A registered application; `None` stands for one not registered (the initial state)."""

    application_id: str
    name: str
    repository_id: str
    path: str
    config_filename: str
    platform_provider: str
    labels: tuple[tuple[str, str], ...]
    disabled: bool = False


def evolve(state: Application | None, event: Event) -> Application | None:
    """The application after `event` (events of other kinds leave it as it is).

    The latest registration describes it but leaves `disabled` alone: only
    disabling and enabling change that.
    """
    match event:
        case ApplicationRegistered():
            return Application(
                application_id=event.application_id,
                name=event.name,
                repository_id=event.repository_id,
                path=event.path,
                config_filename=event.config_filename,
                platform_provider=event.platform_provider,
                labels=event.labels,
                disabled=state.disabled if state is not None else False,
            )
        case ApplicationDisabled() if state is not None:
            return msgspec.structs.replace(state, disabled=True)
        case ApplicationEnabled() if state is not None:
            return msgspec.structs.replace(state, disabled=False)
        case ApplicationDeleted():
            return None  # deleted: as if never registered
        case _:
            return state


def application_of(events: Iterable[Event]) -> Application | None:
    """The application after `events` (its stream, in order), or None if it is not registered."""
    return functools.reduce(evolve, events, None)
