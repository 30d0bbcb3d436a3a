"""The API's wire types: request bodies, resources and errors, as msgspec Structs.

Requests are decoded straight into these (unknown fields refused), so their
constraints are the first validation, and the OpenAPI document's component
schemas are generated from them: what is documented is what is enforced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.api.decider import (
    CONFIG_FILENAME_PATTERN,
    DEFAULT_CONFIG_FILENAME,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAX_LABELS,
    MAX_PATH_LENGTH,
    NAME_PATTERN,
    PATH_PATTERN,
    PROVIDER_PATTERN,
    RULES,
    Strategy,
)

Name = Annotated[str, Meta(pattern=NAME_PATTERN, description=RULES["name"])]
RepositoryId = Annotated[str, Meta(pattern=NAME_PATTERN, description=RULES["repository_id"])]
RepoPath = Annotated[
    str, Meta(pattern=PATH_PATTERN, max_length=MAX_PATH_LENGTH, description=RULES["path"])
]
ConfigFilename = Annotated[
    str,
    Meta(pattern=CONFIG_FILENAME_PATTERN, max_length=255, description=RULES["config_filename"]),
]
PlatformProvider = Annotated[
    str, Meta(pattern=PROVIDER_PATTERN, description=RULES["platform_provider"])
]
LabelKey = Annotated[str, Meta(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Meta(pattern=LABEL_VALUE_PATTERN)]
Labels = Annotated[
    dict[LabelKey, LabelValue], Meta(max_length=MAX_LABELS, description=RULES["labels"])
]
Position = Annotated[
    int,
    Meta(
        ge=0,
        description="The log position of the latest event this answer reflects; pass it as "
        "`min_position` to a later read to see at least this state.",
    ),
]


class RegisterApplicationRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Register an application: a directory of a watched repository holding its config."""

    name: Name
    repository_id: RepositoryId
    path: RepoPath
    config_filename: ConfigFilename = DEFAULT_CONFIG_FILENAME
    platform_provider: PlatformProvider = ""
    labels: Labels = msgspec.field(default_factory=dict)


class SyncApplicationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deploy the application's branch head now, optionally forcing a strategy."""

    strategy: Annotated[Strategy, Meta(description=RULES["strategy"])] = "auto"


class ApplicationResource(msgspec.Struct, frozen=True, kw_only=True):
    """A registered application."""

    application_id: str
    name: str
    repository_id: str
    path: str
    config_filename: str
    platform_provider: str
    labels: dict[str, str]
    disabled: bool
    registered_at: datetime
    updated_at: datetime
    position: Position


class ApplicationList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of applications, ordered by name."""

    items: list[ApplicationResource]
    next_cursor: Annotated[
        str | None,
        Meta(description="Pass as `cursor` for the next page; null on the last page."),
    ] = None


class ApplicationDeletion(msgspec.Struct, frozen=True, kw_only=True):
    """The application was deleted; with `cascade`, the drift service deletes its live resources."""

    application_id: str
    name: str
    cascade: bool
    position: Position


class SyncAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A sync was recorded; the gitwatcher turns it into a deployment of the branch head."""

    request_id: str
    application_id: str
    strategy: Strategy
    position: Position


ErrorCode = Literal[
    "invalid_request",
    "invalid_json",
    "not_found",
    "method_not_allowed",
    "name_taken",
    "already_registered",
    "application_disabled",
    "conflict",
    "projection_lagging",
    "unavailable",
    "internal",
]


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: ErrorCode
    message: str
    field: Annotated[
        str | None, Meta(description="The request field at fault, for validation errors.")
    ] = None
    application_id: Annotated[
        str | None, Meta(description="The application a conflict is about, when there is one.")
    ] = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every error answer has this body."""

    error: ErrorDetail
