"""The API's wire types: request bodies, query parameters, path parameters, resources and
errors, as msgspec Structs.

Requests are decoded straight into these (unknown fields refused), so their
constraints are the first validation, and the OpenAPI document is generated
from them and the route table (`openapi.py`): what is documented is what is
enforced. A query Struct's fields are a route's query parameters, each with
its description; `PATH_PARAMETERS` describes the `{name}`s of route paths.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from services.api.decider import (
    COMMIT_PATTERN,
    CONFIG_FILENAME_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAX_LABELS,
    MAX_PATH_LENGTH,
    NAME_PATTERN,
    PATH_PATTERN,
    PROVIDER_PATTERN,
    RULES,
)
from shared.analysis.judges import JUDGE_NAMES
from shared.config.discovery import DEFAULT_CONFIG_FILENAME
from shared.events.catalog import LiveResource
from shared.events.vocabulary import DeploymentStatus, Strategy, SyncState
from shared.insights import Figures, Period, PeriodFigures
from shared.syncstate import Drift, LastDeployment

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

NextCursor = Annotated[
    str | None, Meta(description="Pass as `cursor` for the next page; null on the last page.")
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


ErrorCode = Literal[
    "invalid_request",
    "invalid_json",
    "ambiguous_id",
    "not_found",
    "method_not_allowed",
    "name_taken",
    "already_registered",
    "application_disabled",
    "config_taken",
    "repository_not_watched",
    "conflict",
    "refused",
    "unauthorized",
    "forbidden",
    "payload_too_large",
    "too_many_streams",
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
    request_id: Annotated[
        str | None,
        Meta(description="A server error's request id: the API's log has the cause under it."),
    ] = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every error answer has this body."""

    error: ErrorDetail


# --- deployments -----------------------------------------------------------------------------


class DeploymentSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment as listings show it (without its stages)."""

    deployment_id: str
    application_id: str
    application_name: str = ""
    """Its name, also once deleted (then `application_deleted`); "" if never registered."""
    application_deleted: bool = False
    status: str
    trigger: str
    commit_hash: str
    commit_message: str
    commander: str
    strategy: str
    summary: str
    reason: str
    queued_behind: str | None = None
    """While PENDING: the deployment of the same application it waits for."""
    triggered_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    position: Position


class DeploymentList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of deployments, newest first."""

    items: list[DeploymentSummary]
    next_cursor: NextCursor = None


class CancelDeploymentRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Cancel a running deployment; with `rollback` (the default) the executor rolls back first."""

    rollback: bool = True


class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A request the executor acts on was recorded (or had been already: `appended` false)."""

    deployment_id: str
    command: Literal["cancel", "approve", "skip"]
    stage_id: str | None = None
    appended: bool
    position: Position


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line a stage wrote (`stage_logs`)."""

    id: int
    deployment_id: str
    stage_id: str
    severity: str
    message: str
    recorded_at: datetime


class LogList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[LogLine]


# --- the event log ----------------------------------------------------------------------------


class EventResource(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log, decoded."""

    global_position: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    recorded_at: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]


class EventList(msgspec.Struct, frozen=True, kw_only=True):
    """Events in log order; `next_cursor` continues a tail in commit order."""

    items: list[EventResource]
    next_cursor: Annotated[
        str | None,
        Meta(description="Pass as `after` to get the events committed after these."),
    ] = None


class StreamState(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's state as of a log position and/or a time: its events folded up to there."""

    stream_id: str
    as_of_position: int | None
    as_of_time: datetime | None
    events: Annotated[int, Meta(description="How many of its events count.")]
    version: Annotated[int, Meta(description="The stream version of the last one; -1: none.")]
    kind: Annotated[
        str,
        Meta(
            description="`deployment`, `application` or `apikey` (a folded state), else "
            "`generic` (the last event's data)."
        ),
    ]
    state: dict[str, Any] | None


# --- API keys ---------------------------------------------------------------------------------

KeyRole = Literal["read-only", "read-write", "admin"]


class CreateApiKeyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new key: read-only may GET, read-write may also command, admin may also manage keys."""

    role: KeyRole
    name: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9@._-]{0,63}$", description="Who uses it; default: its id.")
    ] = ""


class ApiKeyResource(msgspec.Struct, frozen=True, kw_only=True):
    """A key, never with its secret."""

    key_id: str
    name: str
    role: KeyRole
    created_at: datetime
    creator: str
    revoked: bool
    revoked_at: datetime | None
    revoker: str


class CreatedApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """The new key and its secret: shown this once, never stored."""

    key: ApiKeyResource
    secret: str


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ApiKeyResource]


# --- event watcher ----------------------------------------------------------------------------


class RegisterEventRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PipeCD's `pipectl event register`: a value for every `eventWatcher` matching the name and
    exactly these labels. The value is written into files as one scalar (never as YAML)."""

    name: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
    data: Annotated[str, Meta(min_length=1, max_length=4096, description="The value to write.")]
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    contexts: Annotated[
        dict[str, str], Meta(description="Written as trailers of the commit (PipeCD's contexts).")
    ] = msgspec.field(default_factory=dict)
    commit_hash: Annotated[
        str, Meta(pattern=r"^([0-9a-f]{7,64})?$", description="The commit that made the value.")
    ] = ""


class RegisteredEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str


class EventOutcomeResource(msgspec.Struct, frozen=True, kw_only=True):
    """What one repository's event watcher did: SUCCESS, NO_CHANGE, OUTDATED, FAILURE or
    NOT_WATCHED, with the commit it pushed."""

    repository_id: str
    status: str
    description: str
    commit_hash: str
    branch: str
    files: list[str]
    watchers: list[str]
    pull_request_url: str
    handled_at: datetime


class WatchedEventResource(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    name: str
    data: str
    labels: dict[str, str]
    registered_at: datetime
    registrar: str
    newest: bool
    handled: list[EventOutcomeResource]


class WatchedEventList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[WatchedEventResource]


class ListWatchedEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    name: Annotated[str | None, Meta(description="Only events of this name.")] = None
    limit: Annotated[int, Meta(ge=1, le=1000, description="At most this many, newest first.")] = 100


# --- plan preview -----------------------------------------------------------------------------

# Branch names as git allows them, minus what could read as an option or a range.
BranchName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")]


class EncryptSecretRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A secret to encrypt for the configured key; it is neither stored nor logged."""

    data: Annotated[str, Meta(min_length=1, max_length=65536)]


class EncryptedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """PipeCD's hybrid format: put it under `encryption.encryptedSecrets` of an app config."""

    ciphertext: str


class PlanPreviewRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Preview a branch (or commit) of a control-config repository against its base branch."""

    repository_id: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    base_branch: Annotated[
        BranchName | None, Meta(description="Default: the branch the control config watches.")
    ] = None
    head_branch: BranchName | None = None
    head_commit: Annotated[str, Meta(pattern=r"^[0-9a-f]{7,40}$")] | None = None


class PlanPreviewResult(msgspec.Struct, frozen=True, kw_only=True):
    """Per affected application: the strategy, summary, stages and diff (or why it failed)."""

    base: dict[str, Any]
    head: dict[str, Any]
    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]


# --- query and path parameters ---------------------------------------------------------------
# Optional parameters are `X | None = None`: the document shows them as X, not required.


class PageSize(msgspec.Struct, frozen=True):
    """A listing's `limit`: what it is when not given, and the most it may be."""

    default: int
    maximum: int


APPLICATIONS_PAGE: Final = PageSize(default=100, maximum=1000)
DEPLOYMENTS_PAGE: Final = PageSize(default=50, maximum=500)
EVENTS_PAGE: Final = PageSize(default=100, maximum=1000)

Text = Annotated[str, Meta(max_length=256)]
"""Query texts longer than this are refused (`wire.query_str`)."""
LogPosition = Annotated[int, Meta(ge=0)]
MinPosition = Annotated[
    LogPosition | None,
    Meta(
        description="Answer only once the read model has applied the event at this log "
        "position (a write's `position`): read-your-writes. Waits a bounded time, then 503."
    ),
]
PageCursor = Annotated[Text | None, Meta(description="`next_cursor` of the previous page.")]


class ListApplicationsQuery(msgspec.Struct, frozen=True, kw_only=True):
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
    min_position: MinPosition = None


class DeleteApplicationQuery(msgspec.Struct, frozen=True, kw_only=True):
    cascade: Annotated[bool, Meta(description="Also delete its live resources.")] = False


class ListDeploymentsQuery(msgspec.Struct, frozen=True, kw_only=True):
    application: Annotated[
        Text | None, Meta(description="Only this application's (id or name).")
    ] = None
    status: Annotated[
        tuple[DeploymentStatus, ...],
        Meta(description="Only these statuses (repeat, or comma-separate)."),
    ] = ()
    limit: Annotated[int, Meta(ge=1, le=DEPLOYMENTS_PAGE.maximum, description="Page size.")] = (
        DEPLOYMENTS_PAGE.default
    )
    cursor: Annotated[
        Annotated[str, Meta(pattern="^[0-9]{1,18}$")] | None,
        Meta(description="`next_cursor` of the previous page."),
    ] = None


class DeploymentLogsQuery(msgspec.Struct, frozen=True, kw_only=True):
    stage_id: Annotated[
        Text | None,
        Meta(description="Only this stage's lines: its id, or its name if no other stage has it."),
    ] = None
    follow: Annotated[
        bool, Meta(description="Stream as server-sent events until the deployment completes.")
    ] = False


JudgeName = Literal[JUDGE_NAMES]  # type: ignore[valid-type]


class RejudgeQuery(msgspec.Struct, frozen=True, kw_only=True):
    judge: Annotated[
        JudgeName | None,
        Meta(description="Judge comparisons with this judge (default: the one each analysis ran)."),
    ] = None


class ListEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    from_position: Annotated[LogPosition | None, Meta(description="The first position.")] = None
    to_position: Annotated[LogPosition | None, Meta(description="The last position.")] = None
    after: Annotated[
        Annotated[str, Meta(pattern="^(head|[0-9]{1,18}:[0-9]{1,18})$")] | None,
        Meta(description="`<tx_id>:<position>` from `next_cursor`, or `head`."),
    ] = None
    category: Annotated[
        Annotated[str, Meta(max_length=64)] | None,
        Meta(description="Only streams of this category (`deployment`, …)."),
    ] = None
    limit: Annotated[int, Meta(ge=1, le=EVENTS_PAGE.maximum, description="At most this many.")] = (
        EVENTS_PAGE.default
    )


class StreamEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    from_version: Annotated[LogPosition | None, Meta(description="The first version.")] = None
    after: Annotated[
        Annotated[int, Meta(ge=-1, le=2**63 - 2)] | None,
        Meta(
            description="Continue after this version (a page's `next_cursor`); "
            "not with `from_version`."
        ),
    ] = None
    limit: Annotated[int, Meta(ge=1, le=EVENTS_PAGE.maximum, description="At most this many.")] = (
        EVENTS_PAGE.default
    )


class StreamStateQuery(msgspec.Struct, frozen=True, kw_only=True):
    position: Annotated[LogPosition | None, Meta(description="A global log position.")] = None
    at: Annotated[
        Annotated[str, Meta(extra_json_schema={"format": "date-time"})] | None,
        Meta(description="An ISO 8601 time with a zone."),
    ] = None


class EventStreamQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /events/stream`'s parameters (docs/events.md); `Last-Event-ID` is a header."""

    after: Annotated[
        Annotated[str, Meta(pattern="^(head|[0-9]{1,18}:[0-9]{1,18})$")] | None,
        Meta(description="An event's cursor `<tx_id>:<position>`, or `head`; default: the start."),
    ] = None
    category: Annotated[
        Annotated[str, Meta(max_length=2048)] | None,
        Meta(description="Only these stream categories (comma-separated)."),
    ] = None
    type: Annotated[
        Annotated[str, Meta(max_length=2048)] | None,
        Meta(description="Only these event types (comma-separated)."),
    ] = None
    application: Annotated[
        Annotated[str, Meta(max_length=128)] | None,
        Meta(description="Only events about this application (its id)."),
    ] = None
    format: Annotated[
        Literal["native", "cloudevents", "cdevents"],
        Meta(description="How each event is sent (docs/events.md)."),
    ] = "native"


class PathParameter(msgspec.Struct, frozen=True, kw_only=True):
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
}
"""What each `{name}` in a route's path is; a name not here is a non-empty string."""


# --- insights (the four DORA metrics; docs/insights.md) --------------------------------------


class InsightsQuery(msgspec.Struct, frozen=True, kw_only=True):
    since: Annotated[
        Annotated[str, Meta(max_length=64)] | None,
        Meta(
            description="Start of the range: an ISO 8601 time with a zone, or a date (UTC "
            "midnight). Default: 30 days (day periods) or 12 weeks (week periods) before `until`."
        ),
    ] = None
    until: Annotated[
        Annotated[str, Meta(max_length=64)] | None,
        Meta(description="End of the range (excluded), as `since`. Default: now."),
    ] = None
    period: Annotated[
        Period, Meta(description="Figures per UTC day, or per ISO week (from Monday).")
    ] = Period.DAY
    application: Annotated[
        Text | None, Meta(description="Only this application (its name or id).")
    ] = None
    label: Annotated[
        tuple[Annotated[str, Meta(max_length=256, pattern="^[^=]+=.*$")], ...],
        Meta(description="key=value; only applications with every one of these labels."),
    ] = ()


class ApplicationInsights(msgspec.Struct, frozen=True, kw_only=True):
    application_id: str
    name: str  # "" once the application is deleted
    figures: Figures


class InsightsReport(msgspec.Struct, frozen=True, kw_only=True):
    """The four DORA metrics over a range: in total, per period, per application."""

    since: datetime
    until: datetime
    period: Period
    application_id: str | None
    """The application asked for, as its id; None: every application the labels match."""
    labels: dict[str, str]
    totals: Figures
    periods: list[PeriodFigures]
    """Every day or week of the range in order, clipped to it; periods without deployments
    are there with zero counts."""
    applications: list[ApplicationInsights]
    """Each application with a deployment or recovery in the range, by name."""


# --- deployment chains (docs/chains.md) -------------------------------------------------------


class ChainDeploymentResource(msgspec.Struct, frozen=True, kw_only=True):
    application_id: str
    deployment_id: str
    status: str
    """SUCCESS | FAILURE | CANCELLED once recorded; RUNNING while its block runs; PENDING before
    its block starts; SKIPPED when the chain ended before its block."""


class ChainBlockResource(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    """0: the deployment that started the chain."""
    status: str
    """PENDING | RUNNING | SUCCESS | FAILURE | CANCELLED | SKIPPED."""
    deployments: list[ChainDeploymentResource]


class ChainResource(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment chain, folded from its stream `chain-<id>`."""

    chain_id: str
    status: str
    """RUNNING | SUCCESS | FAILURE | CANCELLED."""
    reason: str
    origin_application_id: str
    origin_deployment_id: str
    cancelled_by: str | None
    blocks: list[ChainBlockResource]
    started_at: datetime | None = None


class ChainList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ChainResource]


class ListChainsQuery(msgspec.Struct, frozen=True, kw_only=True):
    limit: Annotated[int, Meta(ge=1, le=100, description="At most this many, newest first.")] = 20


class ChainCancelled(msgspec.Struct, frozen=True, kw_only=True):
    """The chain was cancelled (or had been: `appended` false) and its running deployments."""

    chain_id: str
    appended: bool
    cancelled_deployments: list[str]
    """The deployments a cancel was asked for now."""


# --- live resources (docs/console.md, "Live resources") --------------------------------------


class ApplicationLiveResources(msgspec.Struct, frozen=True, kw_only=True):
    """The application's live objects as the drift service last recorded them
    (`application_live_resources_observed` on stream `liveresources-<id>`)."""

    application_id: str
    observed_at: datetime | None
    """When they were recorded; null (and no resources) before the drift service has looked."""
    resources: list[LiveResource]
    """Owners before what they own; `owners` are uids of other items (nest by them)."""
    truncated: int
    """Objects left out to keep the record bounded."""
