"""What query and path parameters are, beyond their Structs: each listing's page size
and the description of every `{name}` in a route's path. Optional query parameters are
`X | None = None`: the document shows them as X, not required.
"""

from __future__ import annotations

from typing import Final

import msgspec


class PageSize(msgspec.Struct, frozen=True):
    """A listing's `limit`: what it is when not given, and the most it may be."""

    default: int
    maximum: int


APPLICATIONS_PAGE: Final = PageSize(default=100, maximum=1000)
DEPLOYMENTS_PAGE: Final = PageSize(default=50, maximum=500)
EVENTS_PAGE: Final = PageSize(default=100, maximum=1000)


class PathParameter(msgspec.Struct, frozen=True, kw_only=True):
    """A path parameter's bounds and description in the OpenAPI document."""

    max_length: int
    description: str | None = None


PATH_PARAMETERS: Final[dict[str, PathParameter]] = {
    "chain": PathParameter(max_length=64, description="The chain's id."),
    "application": PathParameter(max_length=63, description="The application's id or its name."),
    "deployment": PathParameter(
        max_length=64,
        description="The deployment's id, or a unique prefix of it (at least 4 characters; 400 "
        "`ambiguous_id` naming candidates when several deployments start so).",
    ),
    "stage": PathParameter(
        max_length=128,
        description="The stage's id within the deployment (e.g. `stage-2`), or its name (e.g. "
        "`WAIT_APPROVAL`) when only one stage has it (409 listing them otherwise).",
    ),
    "stream_id": PathParameter(
        max_length=200, description="`<category>-<id>`, e.g. `deployment-…`, `application-…`."
    ),
    "key_id": PathParameter(max_length=64),
    "config": PathParameter(
        max_length=32,
        description="An unregistered application's `id` (`GET /unregistered-applications`).",
    ),
}
"""What each `{name}` in a route's path is; a name not here is a non-empty string."""
