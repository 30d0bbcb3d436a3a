"""The API's wire types: request bodies, query parameters, path parameters, resources and
errors, as msgspec Structs.

Requests are decoded straight into these (unknown fields refused), so their
constraints are the first validation, and the OpenAPI document is generated
from them and the route table (`openapi.py`): what is documented is what is
enforced. A query Struct's fields are a route's query parameters, each with
its description; `PATH_PARAMETERS` describes the `{name}`s of route paths.

This package is their public face: import them from here
(`from services.api.schemas import DeploymentSummary`). One module per
resource, named as its route module in `routes/`: `applications`,
`deployments`, `events`, `apikeys`, `watched_events`, `secrets`,
`plan_preview`, `insights`, `chains`, `live_resources`, `unregistered`; and what they share:
`fields` (constrained field types), `errors` (the error body) and
`parameters` (page sizes, path parameters). A new route's Structs go in its
resource's module and are imported here.
"""

from __future__ import annotations

from services.api.schemas.apikeys import (
    ApiKeyList,
    ApiKeyResource,
    CreateApiKeyRequest,
    CreatedApiKey,
    KeyRole,
)
from services.api.schemas.applications import (
    SYNC_STATES,
    AdoptApplicationRequest,
    ApplicationAdoption,
    ApplicationDeletion,
    ApplicationList,
    ApplicationResource,
    ApplicationSync,
    DeleteApplicationQuery,
    GetApplicationQuery,
    ListApplicationsQuery,
    RegisterApplicationRequest,
    SyncAccepted,
    SyncApplicationRequest,
)
from services.api.schemas.chains import (
    ChainBlockResource,
    ChainCancelled,
    ChainDeploymentResource,
    ChainList,
    ChainResource,
    ListChainsQuery,
)
from services.api.schemas.deployments import (
    CancelDeploymentRequest,
    CommandAccepted,
    DeploymentList,
    DeploymentLogsQuery,
    DeploymentSummary,
    JudgeName,
    ListDeploymentsQuery,
    LogLine,
    LogList,
    RejudgeQuery,
)
from services.api.schemas.errors import (
    ErrorBody,
    ErrorCode,
    ErrorDetail,
)
from services.api.schemas.events import (
    EventList,
    EventResource,
    EventStreamQuery,
    ListEventsQuery,
    StreamEventsQuery,
    StreamState,
    StreamStateQuery,
)
from services.api.schemas.fields import (
    ConfigFilename,
    LabelKey,
    Labels,
    LabelValue,
    LogPosition,
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
from services.api.schemas.insights import (
    ApplicationInsights,
    InsightsQuery,
    InsightsReport,
)
from services.api.schemas.live_resources import (
    ApplicationLiveResources,
)
from services.api.schemas.parameters import (
    APPLICATIONS_PAGE,
    DEPLOYMENTS_PAGE,
    EVENTS_PAGE,
    PATH_PARAMETERS,
    PageSize,
    PathParameter,
)
from services.api.schemas.plan_preview import (
    BranchName,
    PlanPreviewRequest,
    PlanPreviewResult,
)
from services.api.schemas.secrets import (
    EncryptedSecret,
    EncryptSecretRequest,
)
from services.api.schemas.unregistered import (
    ListUnregisteredQuery,
    RegisterUnregisteredRequest,
    UnregisteredApplication,
    UnregisteredApplicationList,
)
from services.api.schemas.watched_events import (
    EventOutcomeResource,
    ListWatchedEventsQuery,
    RegisteredEvent,
    RegisterEventRequest,
    WatchedEventList,
    WatchedEventResource,
)

__all__ = [
    "APPLICATIONS_PAGE",
    "DEPLOYMENTS_PAGE",
    "EVENTS_PAGE",
    "PATH_PARAMETERS",
    "SYNC_STATES",
    "AdoptApplicationRequest",
    "ApiKeyList",
    "ApiKeyResource",
    "ApplicationAdoption",
    "ApplicationDeletion",
    "ApplicationInsights",
    "ApplicationList",
    "ApplicationLiveResources",
    "ApplicationResource",
    "ApplicationSync",
    "BranchName",
    "CancelDeploymentRequest",
    "ChainBlockResource",
    "ChainCancelled",
    "ChainDeploymentResource",
    "ChainList",
    "ChainResource",
    "CommandAccepted",
    "ConfigFilename",
    "CreateApiKeyRequest",
    "CreatedApiKey",
    "DeleteApplicationQuery",
    "DeploymentList",
    "DeploymentLogsQuery",
    "DeploymentSummary",
    "EncryptSecretRequest",
    "EncryptedSecret",
    "ErrorBody",
    "ErrorCode",
    "ErrorDetail",
    "EventList",
    "EventOutcomeResource",
    "EventResource",
    "EventStreamQuery",
    "GetApplicationQuery",
    "InsightsQuery",
    "InsightsReport",
    "JudgeName",
    "KeyRole",
    "LabelKey",
    "LabelValue",
    "Labels",
    "ListApplicationsQuery",
    "ListChainsQuery",
    "ListDeploymentsQuery",
    "ListEventsQuery",
    "ListUnregisteredQuery",
    "ListWatchedEventsQuery",
    "LogLine",
    "LogList",
    "LogPosition",
    "MinPosition",
    "Name",
    "NextCursor",
    "PageCursor",
    "PageSize",
    "PathParameter",
    "PlanPreviewRequest",
    "PlanPreviewResult",
    "PlatformProvider",
    "Position",
    "RegisterApplicationRequest",
    "RegisterEventRequest",
    "RegisterUnregisteredRequest",
    "RegisteredEvent",
    "RejudgeQuery",
    "RepoPath",
    "RepositoryId",
    "StreamEventsQuery",
    "StreamState",
    "StreamStateQuery",
    "SyncAccepted",
    "SyncApplicationRequest",
    "Text",
    "UnregisteredApplication",
    "UnregisteredApplicationList",
    "WatchedEventList",
    "WatchedEventResource",
]
