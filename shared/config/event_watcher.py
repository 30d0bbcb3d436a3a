"""Event watcher settings: `kind: EventWatcher` files in `.pipe/` and an app's `eventWatcher`.

When an event (say, "image-update" with the new tag) arrives, the watcher
writes its value into files of the config repository and commits: a YAML or
JSON field by path, or the first capture group of a regex. Shapes are
PipeCD's `pkg/config/event_watcher.go`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.config._base import Spec

__all__ = [
    "EventWatcherConfig",
    "EventWatcherEvent",
    "EventWatcherHandler",
    "EventWatcherHandlerConfig",
    "EventWatcherMatcher",
    "EventWatcherReplacement",
    "EventWatcherSpec",
]


class EventWatcherReplacement(Spec, frozen=True):
    """One place to write the event's value; exactly one of the field kinds is set."""

    file: str = ""
    yaml_field: str = ""
    json_field: str = ""
    hcl_field: str = msgspec.field(default="", name="HCLField")
    regex: str = ""


class EventWatcherEvent(Spec, frozen=True):
    """One event of an EventWatcher file: its name, labels and replacements."""

    name: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    replacements: tuple[EventWatcherReplacement, ...] = ()


class EventWatcherSpec(Spec, frozen=True):
    """`kind: EventWatcher`: which files change when which named event happens."""

    events: tuple[EventWatcherEvent, ...] = ()


class EventWatcherMatcher(Spec, frozen=True):
    """Which registered events a handler takes: by name and labels."""

    name: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class EventWatcherHandlerConfig(Spec, frozen=True):
    """A GIT_UPDATE handler's settings: commit message, pull request, replacements."""

    commit_message: str = ""
    make_pull_request: bool = False
    """Commit on a new branch `<event name>-<uuid>` and open a pull request, not on the branch."""
    replacements: tuple[EventWatcherReplacement, ...] = ()


class EventWatcherHandler(Spec, frozen=True):
    """`handler`: what to do with a matching event (only GIT_UPDATE exists)."""

    type: Literal["GIT_UPDATE"] = "GIT_UPDATE"
    config: EventWatcherHandlerConfig = EventWatcherHandlerConfig()


class EventWatcherConfig(Spec, frozen=True):
    """An application's own event watcher entry (`spec.eventWatcher[]`)."""

    matcher: EventWatcherMatcher = EventWatcherMatcher()
    handler: EventWatcherHandler = EventWatcherHandler()
