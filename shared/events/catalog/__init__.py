"""The domain events every service agrees on (DESIGN §2, §5): the heart of the wire contract.

This package is the catalog's public face: import events from here
(`from shared.events.catalog import DeploymentPlanned`), never from the family
modules. Each family module holds the events of one stream family, in the order
the stream sees them: `applications`, `live_resources`, `repositories`,
`deployments` (trigger to plan), `chains`, `execution` (the executor's stages),
`analysis`, `apikeys`, `eventwatcher`, `notifications`, `lifecycle` (service
processes) and `relay`.

The rest of the contract sits beside it: `vocabulary.py` (the closed sets of
values, as the `StrEnum` types of these fields), `streams.py` (the stream of
each family) and `ids.py` (the ids derived from causes).

Past tense, an explicit wire tag on each (and `frozen=True` repeated, which
mypy's msgspec support needs to see on every subclass), tuples inside frozen
Structs, and a default on every field added after a type was first stored.
Add an event to its family module, import it here and add it to `ALL_EVENTS`
(whose order is the order of the AsyncAPI document), and write a golden file in
`tests/golden/events/`.
"""

from __future__ import annotations

from shared.events.base import Event
from shared.events.catalog.analysis import (
    AnalysisCheck,
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisRequested,
    AnalysisStarted,
    AnalysisTickJudged,
)
from shared.events.catalog.apikeys import (
    ApiKeyCreated,
    ApiKeyRevoked,
)
from shared.events.catalog.applications import (
    ApplicationAdopted,
    ApplicationConfigClaimed,
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationHealthChanged,
    ApplicationNameReserved,
    ApplicationRegistered,
    ApplicationResourcesDeleted,
    ApplicationResourcesDeletionFailed,
    ApplicationSyncStateChanged,
    SyncRequested,
)
from shared.events.catalog.chains import (
    ChainBlock,
    ChainBlockStarted,
    ChainCancelRequested,
    ChainCompleted,
    ChainDeploymentFinished,
    ChainNode,
    ChainStarted,
)
from shared.events.catalog.deployments import (
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentTriggered,
    PlannedStage,
)
from shared.events.catalog.eventwatcher import (
    EventHandled,
    EventRegistered,
)
from shared.events.catalog.execution import (
    DeploymentCancelRequested,
    DeploymentRollingBack,
    DeploymentStarted,
    StageApproved,
    StageCompleted,
    StageSkipRequested,
    StageStarted,
)
from shared.events.catalog.lifecycle import (
    ServiceStarted,
    ServiceStopped,
)
from shared.events.catalog.live_resources import (
    ApplicationLiveResourcesObserved,
    LiveResource,
)
from shared.events.catalog.notifications import (
    NotificationAttemptFailed,
    NotificationDelivered,
    NotificationFailed,
    NotificationScheduled,
)
from shared.events.catalog.relay import (
    EventPublishFailed,
)
from shared.events.catalog.repositories import (
    ApplicationConfigDiscovered,
    ApplicationConfigObserved,
    ApplicationConfigRemoved,
    CommitObserved,
    ConfigMention,
    RepositoryFetchFailed,
    RepositoryRecovered,
    WebhookRejected,
)
from shared.events.codec import EventRegistry

__all__ = [
    "ALL_EVENTS",
    "AnalysisCheck",
    "AnalysisConcluded",
    "AnalysisMeasured",
    "AnalysisRequested",
    "AnalysisStarted",
    "AnalysisTickJudged",
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "ApplicationAdopted",
    "ApplicationConfigClaimed",
    "ApplicationConfigDiscovered",
    "ApplicationConfigObserved",
    "ApplicationConfigRemoved",
    "ApplicationDeleted",
    "ApplicationDisabled",
    "ApplicationEnabled",
    "ApplicationHealthChanged",
    "ApplicationLiveResourcesObserved",
    "ApplicationNameReserved",
    "ApplicationRegistered",
    "ApplicationResourcesDeleted",
    "ApplicationResourcesDeletionFailed",
    "ApplicationSyncStateChanged",
    "ChainBlock",
    "ChainBlockStarted",
    "ChainCancelRequested",
    "ChainCompleted",
    "ChainDeploymentFinished",
    "ChainNode",
    "ChainStarted",
    "CommitObserved",
    "ConfigMention",
    "DeploymentCancelRequested",
    "DeploymentCompleted",
    "DeploymentPlanFailed",
    "DeploymentPlanned",
    "DeploymentQueued",
    "DeploymentRollingBack",
    "DeploymentStarted",
    "DeploymentTriggered",
    "EventHandled",
    "EventPublishFailed",
    "EventRegistered",
    "LiveResource",
    "NotificationAttemptFailed",
    "NotificationDelivered",
    "NotificationFailed",
    "NotificationScheduled",
    "PlannedStage",
    "RepositoryFetchFailed",
    "RepositoryRecovered",
    "ServiceStarted",
    "ServiceStopped",
    "StageApproved",
    "StageCompleted",
    "StageSkipRequested",
    "StageStarted",
    "SyncRequested",
    "WebhookRejected",
    "default_registry",
]

ALL_EVENTS: tuple[type[Event], ...] = (
    ApplicationRegistered,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationNameReserved,
    ApplicationConfigClaimed,
    SyncRequested,
    ApplicationSyncStateChanged,
    ApplicationHealthChanged,
    ApplicationDeleted,
    ApplicationAdopted,
    ApplicationResourcesDeleted,
    ApplicationResourcesDeletionFailed,
    ApplicationLiveResourcesObserved,
    CommitObserved,
    RepositoryFetchFailed,
    RepositoryRecovered,
    WebhookRejected,
    ApplicationConfigDiscovered,
    ApplicationConfigObserved,
    ApplicationConfigRemoved,
    DeploymentTriggered,
    DeploymentQueued,
    DeploymentPlanned,
    DeploymentPlanFailed,
    DeploymentCompleted,
    ChainStarted,
    ChainBlockStarted,
    ChainDeploymentFinished,
    ChainCancelRequested,
    ChainCompleted,
    DeploymentStarted,
    StageStarted,
    StageCompleted,
    DeploymentRollingBack,
    DeploymentCancelRequested,
    StageApproved,
    StageSkipRequested,
    AnalysisRequested,
    AnalysisConcluded,
    AnalysisStarted,
    AnalysisMeasured,
    AnalysisTickJudged,
    ApiKeyCreated,
    ApiKeyRevoked,
    EventRegistered,
    EventHandled,
    NotificationScheduled,
    NotificationAttemptFailed,
    NotificationDelivered,
    NotificationFailed,
    EventPublishFailed,
    ServiceStarted,
    ServiceStopped,
)


def default_registry() -> EventRegistry:
    """A registry of every domain event, at its current schema version."""
    return EventRegistry(ALL_EVENTS)
