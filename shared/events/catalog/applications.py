"""Applications: registration, names and config claims, sync, health, adoption and
cascade deletion (stream `application-<application_id>`; names `appname-<name>`,
config claims `configclaim-<digest>`, deletions `drift-<id>`).
"""

from __future__ import annotations

from shared.events.base import Event
from shared.events.vocabulary import (
    Strategy,
    SyncState,
)


class ApplicationRegistered(Event, tag="application_registered", frozen=True):
    """An application was registered: its name, repository and path."""

    application_id: str
    name: str
    repository_id: str
    path: str
    config_filename: str = "app.pipecd.yaml"
    platform_provider: str = ""
    labels: tuple[tuple[str, str], ...] = ()


class ApplicationDisabled(Event, tag="application_disabled", frozen=True):
    """An application was disabled: no deployment is planned for it until it is enabled."""

    application_id: str


class ApplicationEnabled(Event, tag="application_enabled", frozen=True):
    """A disabled application was enabled again."""

    application_id: str


class ApplicationNameReserved(Event, tag="application_name_reserved", frozen=True):
    """An application name taken (stream `appname-<name>`), so it is registered only once.

    Appended in the same transaction as the `ApplicationRegistered` it names.
    """

    name: str
    application_id: str


class ApplicationConfigClaimed(Event, tag="application_config_claimed", frozen=True):
    """A config file taken by an application (stream `configclaim-<digest>`, the digest of
    repository, path and file), so two applications never deploy the same config.

    Appended in the same transaction as the `ApplicationRegistered` it belongs to;
    the application's `ApplicationDeleted` releases it.
    """

    application_id: str
    repository_id: str
    path: str
    config_filename: str


class SyncRequested(Event, tag="sync_requested", frozen=True):
    """`slipway app sync`: deploy the branch head now (gitwatcher turns it into a trigger)."""

    application_id: str
    request_id: str
    strategy: Strategy = Strategy.AUTO
    commander: str = ""


class ApplicationSyncStateChanged(Event, tag="application_sync_state_changed", frozen=True):
    """Drift detection found the live state newly in or out of sync with the git head.

    Stream `drift-<application_id>`; appended only when the state or summary changes.
    """

    application_id: str
    state: SyncState  # SYNCED | OUT_OF_SYNC
    summary: str
    diff: str = ""
    commit_hash: str = ""


class ApplicationHealthChanged(Event, tag="application_health_changed", frozen=True):
    """Drift detection found the application's live workloads newly healthy or unhealthy.

    Stream `drift-<application_id>`; appended when health differs from the last
    recorded (and on the first check). `previous` is "" on that first one.
    """

    application_id: str
    healthy: bool
    summary: str
    previous: str = ""  # HEALTHY | UNHEALTHY | "" (never recorded)


class ApplicationDeleted(Event, tag="application_deleted", frozen=True):
    """`slipway app delete`: the application is gone; with `cascade`, its live resources too."""

    application_id: str
    cascade: bool = False
    commander: str = ""


class ApplicationAdopted(Event, tag="application_adopted", frozen=True):
    """`slipway app import`: the application took over what PipeCD deployed.

    `running_commit_hash` is the commit running now (from the objects'
    `pipecd.dev/commit-hash`, or given), so the next deployment is planned
    against it (pipeline, analysis, rollback) like PipeCD's; `resources` are the
    keys (`group/kind/namespace/name`) now labelled and owned by Slipway;
    `pipecd_application_id` the PipeCD application they were annotated with.
    """

    application_id: str
    running_commit_hash: str
    resources: tuple[str, ...] = ()
    pipecd_application_id: str = ""
    commander: str = ""


class ApplicationResourcesDeleted(Event, tag="application_resources_deleted", frozen=True):
    """The live resources of a cascade-deleted application were deleted (stream `drift-<id>`).

    `resources` are keys `group/kind/namespace/name`, each followed by ` on <provider>`
    when the application's `resourceRoutes` spread it over several platform providers.
    """

    application_id: str
    resources: tuple[str, ...] = ()


class ApplicationResourcesDeletionFailed(
    Event, tag="application_resources_deletion_failed", frozen=True
):
    """A cascade delete could not delete every live resource (stream `drift-<id>`).

    `deleted` are the keys this attempt deleted, `remaining` those still live
    (`group/kind/namespace/name`, with ` on <provider>` as in
    `ApplicationResourcesDeleted`), `reason` why (the cluster's refusal, or a
    platform provider the control config lacks). The drift service tries again
    each round and records `ApplicationResourcesDeleted` once nothing is left.
    """

    application_id: str
    reason: str
    deleted: tuple[str, ...] = ()
    remaining: tuple[str, ...] = ()
