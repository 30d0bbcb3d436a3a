"""Applications: registration, sync, adoption and deletion requests, the application
resource with its sync state, and the queries of the application routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from services.api.decider import (
    COMMIT_PATTERN,
    RULES,
)
from services.api.schemas.fields import (
    ConfigFilename,
    Labels,
    MinPosition,
    Name,
    NextCursor,
    PageCursor,
    PlatformProvider,
    Position,
    RepoPath,
    RepositoryId,
    Text,
)
from services.api.schemas.parameters import (
    APPLICATIONS_PAGE,
)
from shared.config.discovery import DEFAULT_CONFIG_FILENAME
from shared.events.vocabulary import Strategy, SyncState
from shared.syncstate import Drift, LastDeployment


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
    verify: Annotated[
        bool,
        Meta(
            description="Check that the config file exists at the watched branch's head "
            "(false skips that git check, not the others)."
        ),
    ] = True


class SyncApplicationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deploy the application's branch head now, optionally forcing a strategy."""

    strategy: Annotated[Strategy, Meta(description=RULES["strategy"])] = Strategy.AUTO


SYNC_STATES: Final = tuple(SyncState)


class ApplicationSync(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the live state matches git (derived as the README's "Sync state" says)."""

    state: SyncState = SyncState.UNKNOWN
    reason: Annotated[str, Meta(description="Why the state is what it is.")] = ""
    since: Annotated[datetime | None, Meta(description="When the state was entered.")] = None
    running_commit: Annotated[
        str,
        Meta(
            description="The commit of the last successful deployment, or the one running "
            'when the application was adopted from PipeCD; "" before either.'
        ),
    ] = ""
    adopted_commit: Annotated[
        str,
        Meta(
            description="The commit running when `slipway app import` adopted the application "
            'from PipeCD; "" when it was not adopted.'
        ),
    ] = ""
    last_deployment: Annotated[
        LastDeployment | None,
        Meta(description="The most recently triggered deployment, with its status and when."),
    ] = None
    drift: Annotated[
        Drift | None,
        Meta(description="Drift detection's latest verdict, with the whole diff."),
    ] = None


class ApplicationResource(msgspec.Struct, frozen=True, kw_only=True):
    """A registered application."""

    application_id: str
    name: str
    repository_id: str
    path: str
    config_filename: str
    platform_provider: str
    labels: Annotated[
        dict[str, str],
        Meta(
            description="The registration's labels merged with the config file's "
            "(`spec.labels`), the config's winning on a shared key."
        ),
    ]
    disabled: bool
    registered_at: datetime
    updated_at: datetime
    position: Position
    registered_labels: Annotated[
        dict[str, str], Meta(description="The labels given at registration.")
    ] = msgspec.field(default_factory=dict)
    config_labels: Annotated[
        dict[str, str],
        Meta(description="`spec.labels` of the config file at the last commit read."),
    ] = msgspec.field(default_factory=dict)
    description: Annotated[
        str, Meta(description="`spec.description` of the config file at the last commit read.")
    ] = ""
    sync_state: SyncState = SyncState.UNKNOWN
    sync: ApplicationSync = msgspec.field(default_factory=ApplicationSync)


class ApplicationList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of applications, ordered by name."""

    items: list[ApplicationResource]
    next_cursor: NextCursor = None


class ApplicationDeletion(msgspec.Struct, frozen=True, kw_only=True):
    """The application was deleted; with `cascade`, the drift service deletes its live resources."""

    application_id: str
    name: str
    cascade: bool
    position: Position


class AdoptApplicationRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """What `slipway app import` took over: the running commit and the objects, now labelled
    and owned by Slipway's field manager."""

    running_commit_hash: Annotated[
        str,
        Meta(
            pattern=COMMIT_PATTERN,
            max_length=64,
            description="The commit running now; the next deployment is planned against it.",
        ),
    ]
    resources: Annotated[
        list[Annotated[str, Meta(max_length=512)]],
        Meta(max_length=10_000, description="Keys `group/kind/namespace/name` taken over."),
    ] = msgspec.field(default_factory=list)
    pipecd_application_id: Annotated[str, Meta(max_length=128)] = ""


class ApplicationAdoption(msgspec.Struct, frozen=True, kw_only=True):
    """The adoption was recorded (`application_adopted` on the application's stream)."""

    application_id: str
    running_commit_hash: str
    resources: list[str]
    position: Position


class SyncAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A sync was recorded; the gitwatcher turns it into a deployment of the branch head."""

    request_id: str
    application_id: str
    deployment_id: Annotated[
        str,
        Meta(
            description="The deployment this sync opens once the gitwatcher has seen it: "
            "`GET /deployments/{deployment_id}` answers 404 until then."
        ),
    ]
    strategy: Strategy
    position: Position


class ListApplicationsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of `GET /applications`."""

    name: Annotated[Text | None, Meta(description="Only the application of this name.")] = None
    label: Annotated[
        tuple[Annotated[str, Meta(max_length=256, pattern="^[^=]+=.*$")], ...],
        Meta(description="key=value; repeat for several (all must match)."),
    ] = ()
    disabled: Annotated[
        bool | None, Meta(description="Only disabled (true) or enabled (false) ones.")
    ] = None
    repository_id: Annotated[Text | None, Meta(description="Only those of this repository.")] = None
    sync_state: Annotated[
        tuple[SyncState, ...],
        Meta(description="Only those in these sync states (repeat, or comma-separate)."),
    ] = ()
    limit: Annotated[int, Meta(ge=1, le=APPLICATIONS_PAGE.maximum, description="Page size.")] = (
        APPLICATIONS_PAGE.default
    )
    cursor: PageCursor = None
    min_position: MinPosition = None


class GetApplicationQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /applications/{id}`."""

    min_position: MinPosition = None


class DeleteApplicationQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `DELETE /applications/{id}`."""

    cascade: Annotated[bool, Meta(description="Also delete its live resources.")] = False
