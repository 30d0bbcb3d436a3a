"""What the drift service saw live for an application (stream
`liveresources-<application_id>`): each object with its owners and health.
"""

from __future__ import annotations

import msgspec

from shared.events.base import Event
from shared.events.vocabulary import (
    ResourceHealth,
)


class LiveResource(msgspec.Struct, frozen=True, kw_only=True):
    """One live object of an application, as `ApplicationLiveResourcesObserved` lists it.

    Only these fields are copied from the cluster (never data, annotations, env or
    other spec), each clipped: `owners` are the uids of its ownerReferences (a Pod's
    ReplicaSet, a ReplicaSet's Deployment); `reason` says why it has its health
    ("2/3 ready", "Running, 1/1 ready", "CrashLoopBackOff"); `created_at` is its
    `creationTimestamp` as the cluster wrote it; `provider` is the platform provider
    whose cluster it was read from (its own, or one its `resourceRoutes` send objects
    to; "" in events recorded before it was kept).
    """

    api_version: str
    kind: str
    namespace: str = ""
    name: str
    uid: str
    owners: tuple[str, ...] = ()
    health: ResourceHealth
    reason: str = ""
    created_at: str = ""
    provider: str = ""


class ApplicationLiveResourcesObserved(
    Event, tag="application_live_resources_observed", frozen=True
):
    """The drift service read the application's live objects: the ones labelled for it and
    what their controllers made (ReplicaSets, Pods), each with its health, on every
    cluster the application's `resourceRoutes` use (each object says its `provider`).

    Stream `liveresources-<application_id>`; appended only when the list differs from
    the last recorded (`digest`, over `resources` and `truncated`), not every round.
    Bounded: at most `shared.platform.livetree.MAX_OBJECTS` objects within a byte
    budget, owners before what they own; `truncated` counts those left out.
    """

    application_id: str
    resources: tuple[LiveResource, ...] = ()
    truncated: int = 0
    digest: str = ""
