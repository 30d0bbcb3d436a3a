"""The domain events every service agrees on (DESIGN §2, §5).

Past tense, an explicit wire tag on each (and `frozen=True` repeated, which
mypy's msgspec support needs to see on every subclass), tuples inside frozen Structs, and a
default on every field added after a type was first stored. Later services add
their events here; each needs a golden file in `tests/golden/events/`.
"""

from __future__ import annotations

from shared.events.base import Event
from shared.events.codec import EventRegistry


class ApplicationRegistered(Event, tag="application_registered", frozen=True):
    application_id: str
    name: str
    repository_id: str
    path: str
    config_filename: str = "app.pipecd.yaml"
    platform_provider: str = ""
    labels: tuple[tuple[str, str], ...] = ()


class ApplicationDisabled(Event, tag="application_disabled", frozen=True):
    application_id: str


class DeploymentTriggered(Event, tag="deployment_triggered", frozen=True):
    deployment_id: str
    application_id: str
    trigger: str  # on_commit | on_command | on_out_of_sync | on_chain
    commit_hash: str
    commit_author: str = ""
    commit_message: str = ""
    strategy: str = "auto"  # auto | quick | pipeline


ALL_EVENTS: tuple[type[Event], ...] = (
    ApplicationRegistered,
    ApplicationDisabled,
    DeploymentTriggered,
)


def default_registry() -> EventRegistry:
    """A registry of every domain event, at its current schema version."""
    return EventRegistry(ALL_EVENTS)
