"""The executor's pure reactions: what an event it consumes asks of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.events.base import Event
from shared.events.catalog import (
    DeploymentCancelRequested,
    DeploymentPlanned,
    StageApproved,
    StageSkipRequested,
)

__all__ = ["HANDLES", "Ignore", "Register", "WakeRunner", "on_event"]


@dataclass(frozen=True)
class Register:
    """A planned deployment to run: make it runnable (claimable by a replica)."""

    deployment_id: str
    application_id: str


@dataclass(frozen=True)
class WakeRunner:
    """A request to a running deployment: its runner should read its stream now."""

    deployment_id: str


@dataclass(frozen=True)
class Ignore:
    """An event the executor has nothing to do with."""


HANDLES: Final[tuple[type[Event], ...]] = (
    DeploymentPlanned,
    DeploymentCancelRequested,
    StageApproved,
    StageSkipRequested,
)
"""The events the executor's consumer handles: a plan to run, and the requests people make
of a running deployment (consumed to wake its runner quickly). Its NATS filter is derived."""


def on_event(event: Event) -> Register | WakeRunner | Ignore:
    """What the executor does with `event` (pure): register it, wake its runner, or nothing."""
    match event:
        case DeploymentPlanned():
            return Register(event.deployment_id, event.application_id)
        case DeploymentCancelRequested() | StageApproved() | StageSkipRequested():
            return WakeRunner(event.deployment_id)
        case _:
            return Ignore()
