"""Unregistered applications: config files the gitwatcher found in a watched repository
that no application is registered at (PipeCD's "unregistered applications"), and the
request registering one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from services.api.schemas.fields import (
    Labels,
    MinPosition,
    Name,
    NextCursor,
    PlatformProvider,
    Text,
)
from services.api.schemas.parameters import APPLICATIONS_PAGE


class UnregisteredApplication(msgspec.Struct, frozen=True, kw_only=True):
    """An application config file in a watched repository that no application is registered
    at. Everything but `id` and `discovered_at` was read from the repository: untrusted
    text, checked only when it is registered."""

    id: Annotated[
        str,
        Meta(
            description="The config file's id: register it with `POST "
            "/unregistered-applications/{config}/register`."
        ),
    ]
    repository_id: str
    path: Annotated[str, Meta(description="Its directory ('.' for the repository's root).")]
    config_filename: str
    name: Annotated[
        str,
        Meta(
            description="The config's `metadata.name` (else its directory's name): the "
            "application's name unless registering gives another."
        ),
    ]
    kind: str
    labels: Annotated[
        dict[str, str], Meta(description="The config's `spec.labels` that pass the label rule.")
    ]
    commit_hash: Annotated[str, Meta(description="The commit it was found at.")]
    discovered_at: datetime


class UnregisteredApplicationList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of unregistered applications, in the order they were discovered."""

    items: list[UnregisteredApplication]
    next_cursor: NextCursor = None


class ListUnregisteredQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of `GET /unregistered-applications`."""

    repository_id: Annotated[Text | None, Meta(description="Only those of this repository.")] = None
    limit: Annotated[int, Meta(ge=1, le=APPLICATIONS_PAGE.maximum, description="Page size.")] = (
        APPLICATIONS_PAGE.default
    )
    cursor: Annotated[
        Annotated[str, Meta(pattern="^[0-9]{1,18}$")] | None,
        Meta(description="`next_cursor` of the previous page."),
    ] = None
    min_position: MinPosition = None


class RegisterUnregisteredRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Register an unregistered application: its repository, directory and config file are
    the discovered ones; the rest as `POST /applications` takes it."""

    name: Annotated[
        Name | None, Meta(description="The application's name; the discovered one by default.")
    ] = None
    platform_provider: PlatformProvider = ""
    labels: Labels = msgspec.field(default_factory=dict)
    verify: Annotated[
        bool,
        Meta(
            description="Check that the config file still exists at the watched branch's head "
            "(false skips that git check, not the others)."
        ),
    ] = True
