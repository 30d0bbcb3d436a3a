"""The pure core of the API's commands: decide / evolve for applications and their names.

Two kinds of stream, both owned by the api service:

- `application-<application_id>`: the application's life (registered,
  disabled, enabled) and the syncs asked of it;
- `appname-<name>`: who holds a name. Registration appends to both in one
  transaction, the name stream with the version it was read at (`NO_STREAM`
  the first time), so of two concurrent registrations of one name exactly one
  commits; the other conflicts, decides again and is rejected;
- `configclaim-<digest>`: who holds a config file (repository, path, file), by
  the same rule, so two applications never deploy one config.

Nothing here awaits, reads a clock, makes an id or logs: ids (and, later,
times) arrive inside the commands, so a decision can be replayed exactly.
Refusals are raised as `Rejected` subclasses that say which HTTP answer fits
them: `InvalidCommand` (the command is malformed; names the field), `TargetNotFound`,
`StateConflict` (the current state forbids it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from shared.applications import Application, evolve
from shared.config.discovery import DEFAULT_CONFIG_FILENAME
from shared.decider import Functions
from shared.errors import Rejected
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationAdopted,
    ApplicationConfigClaimed,
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationNameReserved,
    ApplicationRegistered,
    SyncRequested,
)
from shared.events.vocabulary import Strategy
from shared.labels import (
    LABEL_KEY_PATTERN,
    LABEL_RULE,
    LABEL_VALUE_PATTERN,
    MAX_LABELS,
    is_valid_label,
)

__all__ = [
    "APPLICATION",
    "COMMIT_PATTERN",
    "CONFIG_CLAIM",
    "ID_PATTERN",
    "LABEL_KEY_PATTERN",
    "LABEL_VALUE_PATTERN",
    "MAX_LABELS",
    "NAME",
    "NAME_PATTERN",
    "PATH_PATTERN",
    "RELEASE",
    "RULES",
    "AdoptApplication",
    "Application",
    "Command",
    "DeleteApplication",
    "DisableApplication",
    "EnableApplication",
    "InvalidCommand",
    "NameHolder",
    "RegisterApplication",
    "RequestSync",
    "ReserveName",
    "StateConflict",
    "TargetNotFound",
    "check_registration",
    "decide",
    "decide_claim",
    "decide_name",
    "decide_release",
    "evolve",
    "evolve_name",
]

ConflictCode = Literal[
    "name_taken", "already_registered", "config_taken", "application_disabled", "refused"
]

# The patterns are written in the subset that Python's `re` and ECMA 262 (JSON
# Schema, hence the OpenAPI document) read alike.
NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
"""Names and repository ids: they become stream ids (`appname-<name>`), so lowercase."""
ID_PATTERN: Final = r"^[0-9a-hjkmnp-tv-z]{26}$"
"""Application ids: lowercase ULIDs (shared/ids.py)."""
_SEGMENT: Final = r"\.?[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*"
PATH_PATTERN: Final = rf"^(\.|{_SEGMENT}(/{_SEGMENT})*)$"
"""A directory relative to the repository root ('.' for the root itself); never '..'."""
CONFIG_FILENAME_PATTERN: Final = rf"^{_SEGMENT}\.ya?ml$"
PROVIDER_PATTERN: Final = r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$"
MAX_PATH_LENGTH: Final = 512

RULES: Final[Mapping[str, str]] = {
    "name": "1-63 lowercase letters, digits, '-' or '_', starting and ending with a letter "
    "or digit",
    "repository_id": "1-63 lowercase letters, digits, '-' or '_', starting and ending with a "
    "letter or digit (a repository id of the control config)",
    "path": f"a directory relative to the repository root ('.' for the root), at most "
    f"{MAX_PATH_LENGTH} characters of letters, digits and ._@+-, without '..' or empty parts",
    "config_filename": "a file name in that directory ending in .yaml or .yml",
    "platform_provider": "empty, or up to 63 letters, digits, '.', '-' or '_'",
    "labels": LABEL_RULE,
    "strategy": "one of " + ", ".join(Strategy),
}
"""What each command field must look like, in words (error messages and the API docs)."""

_PATTERNS: Final = {
    "name": re.compile(NAME_PATTERN),
    "repository_id": re.compile(NAME_PATTERN),
    "path": re.compile(PATH_PATTERN),
    "config_filename": re.compile(CONFIG_FILENAME_PATTERN),
    "platform_provider": re.compile(PROVIDER_PATTERN),
}


# --- refusals -----------------------------------------------------------------------------


class InvalidCommand(Rejected):
    """The command is malformed: `field` says which part."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class TargetNotFound(Rejected):
    """The command is about an application that does not exist."""


class StateConflict(Rejected):
    """The current state forbids the command; `code` says which rule, for clients to branch on."""

    def __init__(
        self, code: ConflictCode, message: str, *, application_id: str | None = None
    ) -> None:
        self.code = code
        self.application_id = application_id
        super().__init__(message)


# --- commands -----------------------------------------------------------------------------


class RegisterApplication(msgspec.Struct, frozen=True, kw_only=True):
    """Register an application under a fresh id, its name and its config file."""

    application_id: str  # chosen by the caller (a fresh id), so deciding stays pure
    name: str
    repository_id: str
    path: str
    config_filename: str = DEFAULT_CONFIG_FILENAME
    platform_provider: str = ""
    labels: tuple[tuple[str, str], ...] = ()


class DisableApplication(msgspec.Struct, frozen=True, kw_only=True):
    """Stop deploying the application."""

    application_id: str


class EnableApplication(msgspec.Struct, frozen=True, kw_only=True):
    """Deploy the application again after it was disabled."""

    application_id: str


class RequestSync(msgspec.Struct, frozen=True, kw_only=True):
    """Ask for a deployment of the application's head (`auto`, `quick_sync` or `pipeline`)."""

    application_id: str
    request_id: str
    strategy: str = "auto"
    commander: str = ""


class DeleteApplication(msgspec.Struct, frozen=True, kw_only=True):
    """Delete the application; with `cascade`, its live resources too."""

    application_id: str
    cascade: bool = False
    commander: str = ""


class AdoptApplication(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the application took over PipeCD's objects (`slipway app import`)."""

    application_id: str
    running_commit_hash: str
    resources: tuple[str, ...] = ()
    pipecd_application_id: str = ""
    commander: str = ""


Command = (
    RegisterApplication
    | DisableApplication
    | EnableApplication
    | RequestSync
    | DeleteApplication
    | AdoptApplication
)

# A git commit id: what `pipecd.dev/commit-hash` holds and the planner can check out.
COMMIT_PATTERN: Final = r"^[0-9a-f]{7,64}$"


class ReserveName(msgspec.Struct, frozen=True, kw_only=True):
    """Hold `name` for the application, so that no other may take it."""

    name: str
    application_id: str


# --- the application stream ---------------------------------------------------------------
# Its state, `Application`, and `evolve` are in shared/applications.py: the planner folds it too.


def decide(state: Application | None, command: Command) -> Sequence[Event]:
    """The events that carry out `command` on `state` (none when it is already done).

    Raises `InvalidCommand`, `TargetNotFound` or `StateConflict` when the command cannot be
    carried out.
    Disabling a disabled application (or enabling an enabled one) decides
    nothing, so a retried request is harmless.
    """
    match command:
        case RegisterApplication():
            check_registration(command)
            if state is not None:
                raise StateConflict(
                    "already_registered",
                    f"application {command.application_id} is already registered",
                    application_id=command.application_id,
                )
            return [
                ApplicationRegistered(
                    application_id=command.application_id,
                    name=command.name,
                    repository_id=command.repository_id,
                    path=command.path,
                    config_filename=command.config_filename,
                    platform_provider=command.platform_provider,
                    labels=tuple(sorted(command.labels)),
                )
            ]
        case DisableApplication():
            app = _existing(state, command.application_id)
            return [] if app.disabled else [ApplicationDisabled(application_id=app.application_id)]
        case EnableApplication():
            app = _existing(state, command.application_id)
            return [ApplicationEnabled(application_id=app.application_id)] if app.disabled else []
        case DeleteApplication():
            app = _existing(state, command.application_id)
            return [
                ApplicationDeleted(
                    application_id=app.application_id,
                    cascade=command.cascade,
                    commander=command.commander,
                )
            ]
        case AdoptApplication():
            app = _existing(state, command.application_id)
            if not re.fullmatch(COMMIT_PATTERN, command.running_commit_hash):
                raise InvalidCommand(
                    "running_commit_hash",
                    f"running_commit_hash {command.running_commit_hash!r} is not a git commit "
                    "id (7 to 64 lowercase hex digits)",
                )
            return [
                ApplicationAdopted(
                    application_id=app.application_id,
                    running_commit_hash=command.running_commit_hash,
                    resources=tuple(sorted(command.resources)),
                    pipecd_application_id=command.pipecd_application_id,
                    commander=command.commander,
                )
            ]
        case RequestSync():
            try:
                strategy = Strategy(command.strategy)
            except ValueError:
                raise InvalidCommand("strategy", f"strategy must be {RULES['strategy']}") from None
            app = _existing(state, command.application_id)
            if app.disabled:
                raise StateConflict(
                    "application_disabled",
                    f"application {app.name} is disabled: enable it before syncing",
                    application_id=app.application_id,
                )
            return [
                SyncRequested(
                    application_id=app.application_id,
                    request_id=command.request_id,
                    strategy=strategy,
                    commander=command.commander,
                )
            ]


def check_registration(command: RegisterApplication) -> None:
    """Raise `InvalidCommand` naming the first field of `command` that breaks its rule."""
    for field, pattern in _PATTERNS.items():
        value: str = getattr(command, field)
        if not pattern.fullmatch(value) or (field == "path" and len(value) > MAX_PATH_LENGTH):
            raise InvalidCommand(field, f"{field} {value!r} is not valid: {RULES[field]}")
    if len(command.labels) > MAX_LABELS:
        raise InvalidCommand(
            "labels", f"too many labels ({len(command.labels)}): {RULES['labels']}"
        )
    keys = [key for key, _ in command.labels]
    if len(set(keys)) != len(keys):
        raise InvalidCommand("labels", "a label key appears more than once")
    for key, value in command.labels:
        if not is_valid_label(key, value):
            raise InvalidCommand("labels", f"label {key}={value} is not valid: {RULES['labels']}")


def _existing(state: Application | None, application_id: str) -> Application:
    if state is None:
        raise TargetNotFound(f"no application {application_id}")
    return state


# --- the name stream ----------------------------------------------------------------------


class NameHolder(msgspec.Struct, frozen=True, kw_only=True):
    """The application holding a name; `None` stands for a free name."""

    application_id: str


def evolve_name(state: NameHolder | None, event: Event) -> NameHolder | None:
    """Who holds a name (`appname-`) or a config file (`configclaim-`) after `event`."""
    match event:
        case ApplicationNameReserved() | ApplicationConfigClaimed():
            return NameHolder(application_id=event.application_id)
        case ApplicationDeleted() if state is not None:
            # The holder was deleted: the name is free again.
            return None if state.application_id == event.application_id else state
        case _:
            return state


def decide_name(state: NameHolder | None, command: ReserveName) -> Sequence[Event]:
    """Reserve a free name; `StateConflict("name_taken")` naming the holder otherwise."""
    if not _PATTERNS["name"].fullmatch(command.name):
        raise InvalidCommand("name", f"name {command.name!r} is not valid: {RULES['name']}")
    if state is not None:
        raise StateConflict(
            "name_taken",
            f"an application named {command.name} already exists ({state.application_id})",
            application_id=state.application_id,
        )
    return [ApplicationNameReserved(name=command.name, application_id=command.application_id)]


# --- the config stream --------------------------------------------------------------------


def decide_claim(state: NameHolder | None, command: RegisterApplication) -> Sequence[Event]:
    """Claim the registration's config file; `StateConflict("config_taken")` naming the holder."""
    where = f"{command.repository_id}:{command.path}/{command.config_filename}"
    if state is not None and state.application_id != command.application_id:
        raise StateConflict(
            "config_taken",
            f"path {command.path!r} with config_filename {command.config_filename!r} is "
            f"already deployed by application {state.application_id} ({where}): one "
            "application per config file",
            application_id=state.application_id,
        )
    return [
        ApplicationConfigClaimed(
            application_id=command.application_id,
            repository_id=command.repository_id,
            path=command.path,
            config_filename=command.config_filename,
        )
    ]


def decide_release(state: NameHolder | None, deleted: ApplicationDeleted) -> Sequence[Event]:
    """Free a name or config file held by the deleted application (others' are left alone).

    An application registered before config claims existed holds none: nothing to free.
    """
    if state is not None and state.application_id == deleted.application_id:
        return [deleted]
    return []


# --- the deciders, as `shared.eventlog.execute` runs them ---------------------------------

APPLICATION: Final = Functions[Application | None, Command](None, evolve, decide)
"""`application-<id>`: register, disable, enable, sync, delete."""
NAME: Final = Functions[NameHolder | None, ReserveName](None, evolve_name, decide_name)
"""`appname-<name>`: reserve a free name."""
CONFIG_CLAIM: Final = Functions[NameHolder | None, RegisterApplication](
    None, evolve_name, decide_claim
)
"""`configclaim-<digest>`: claim a config file for one application."""
RELEASE: Final = Functions[NameHolder | None, ApplicationDeleted](None, evolve_name, decide_release)
"""A name or config claim stream: free what a deleted application held."""
