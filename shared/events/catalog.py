"""The domain events every service agrees on (DESIGN §2, §5): the heart of the wire contract.

The rest of the contract sits beside it: `py` (the closed sets of
values, as the `StrEnum` types of these fields), `streams.py` (the stream of
each group below) and `ids.py` (the ids derived from causes).

Past tense, an explicit wire tag on each (and `frozen=True` repeated, which
mypy's msgspec support needs to see on every subclass), tuples inside frozen
Structs, and a default on every field added after a type was first stored.
Add an event here, to `ALL_EVENTS`, and a golden file in `tests/golden/events/`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from shared.events.base import Event
from shared.events.codec import EventRegistry
from shared.events.vocabulary import (
    CheckKind,
    CheckStrategy,
    CommitSource,
    DeploymentStatus,
    Deviation,
    KeyRole,
    ReceiverKind,
    ResourceHealth,
    SampleRole,
    StageName,
    StageStatus,
    Strategy,
    SyncState,
    TickOutcome,
    Trigger,
    Verdict,
    WebhookProvider,
)

# Applications (stream `application-<application_id>`) -------------------------


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


class LiveResource(msgspec.Struct, frozen=True, kw_only=True):
    """One live object of an application, as `ApplicationLiveResourcesObserved` lists it.

    Only these fields are copied from the cluster (never data, annotations, env or
    other spec), each clipped: `owners` are the uids of its ownerReferences (a Pod's
    ReplicaSet, a ReplicaSet's Deployment); `reason` says why it has its health
    ("2/3 ready", "Running, 1/1 ready", "CrashLoopBackOff"); `created_at` is its
    `creationTimestamp` as the cluster wrote it.
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


class ApplicationLiveResourcesObserved(
    Event, tag="application_live_resources_observed", frozen=True
):
    """The drift service read the application's live objects: the ones labelled for it and
    what their controllers made (ReplicaSets, Pods), each with its health.

    Stream `liveresources-<application_id>`; appended only when the list differs from
    the last recorded (`digest`, over `resources` and `truncated`), not every round.
    Bounded: at most `shared.platform.livetree.MAX_OBJECTS` objects within a byte
    budget, owners before what they own; `truncated` counts those left out.
    """

    application_id: str
    resources: tuple[LiveResource, ...] = ()
    truncated: int = 0
    digest: str = ""


# Repositories (stream `repository-<repository_id>`) ----------------------------


class CommitObserved(Event, tag="commit_observed", frozen=True):
    """The watched branch moved to a new head; appended once per commit by any replica."""

    repository_id: str
    branch: str
    commit_hash: str
    previous_hash: str = ""
    author: str = ""
    message: str = ""
    committed_at: str = ""  # ISO 8601, as git reports it
    changed_paths: tuple[str, ...] = ()
    source: CommitSource = CommitSource.POLL


class RepositoryFetchFailed(Event, tag="repository_fetch_failed", frozen=True):
    """Fetching a repository failed; the watcher retries after `retry_in_s`."""

    repository_id: str
    reason: str
    attempt: int = 1
    retry_in_s: float = 0.0


class RepositoryRecovered(Event, tag="repository_recovered", frozen=True):
    """A repository is fetched again after failed attempts."""

    repository_id: str
    after_attempts: int = 1


class WebhookRejected(Event, tag="webhook_rejected", frozen=True):
    """A webhook was refused (bad signature, unknown repository, malformed body)."""

    repository_id: str
    provider: WebhookProvider
    reason: str
    remote_addr: str = ""


class ApplicationConfigDiscovered(Event, tag="application_config_discovered", frozen=True):
    """A config file in a watched repository that no registered application points at."""

    repository_id: str
    path: str
    config_filename: str
    name: str
    kind: str = "KubernetesApp"
    labels: tuple[tuple[str, str], ...] = ()
    commit_hash: str = ""


class ConfigMention(msgspec.Struct, frozen=True, kw_only=True):
    """One `spec.notification.mentions[]` entry of an application config: whom Slack
    mentions on notifications of `event` (a PipeCD type without `EVENT_`, or "*")."""

    event: str
    slack_users: tuple[str, ...] = ()
    slack_groups: tuple[str, ...] = ()


class ApplicationConfigObserved(Event, tag="application_config_observed", frozen=True):
    """A registered application's config file, read at a commit of its repository.

    Stream `appconfig-<application_id>`, owned by the gitwatcher. Appended when
    the config's labels, notification mentions or description differ from the
    ones last recorded for the application (and once for an application not
    read before), so that readers merge the labels with the registration's
    (`shared.labels.merge_labels`), the notifier mentions whom it names, and
    the API and console show `spec.description` (clipped to `DESCRIPTION_CHARS`).
    """

    repository_id: str
    application_id: str
    commit_hash: str
    labels: tuple[tuple[str, str], ...] = ()
    mentions: tuple[ConfigMention, ...] = ()
    description: str = ""


# Deployments (stream `deployment-<deployment_id>`) -----------------------------


class DeploymentTriggered(Event, tag="deployment_triggered", frozen=True):
    """A deployment of an application at a commit was asked for (stream `deployment-<id>`)."""

    deployment_id: str
    application_id: str
    trigger: Trigger
    commit_hash: str
    commit_author: str = ""
    commit_message: str = ""
    strategy: Strategy = Strategy.AUTO  # auto, or a strategy the command forced
    repository_id: str = ""
    commit_branch: str = ""
    commander: str = ""  # who asked, for on_command
    # When the commit was made, ISO 8601 as git reports it (`CommitObserved.committed_at`);
    # "" when the trigger did not know (drift, events written before this field).
    committed_at: str = ""
    chain_id: str = ""  # on_chain: the chain (stream `chain-<id>`) that triggered it


class PlannedStage(msgspec.Struct, frozen=True, kw_only=True):
    """One stage of a planned pipeline, as the executor will run it."""

    id: str  # stable within the deployment, e.g. "stage-0"
    name: StageName
    index: int
    desc: str = ""
    options_json: str = "{}"  # the stage's `with:` block, as JSON
    predefined: bool = False
    visible: bool = True  # False for the hidden ROLLBACK stage
    requires: tuple[str, ...] = ()
    timeout_s: float = 0.0


class DeploymentQueued(Event, tag="deployment_queued", frozen=True):
    """Another deployment of the application is active; this one waits its turn (FIFO)."""

    deployment_id: str
    application_id: str
    behind_deployment_id: str


class DeploymentPlanned(Event, tag="deployment_planned", frozen=True):
    """The planner's plan for a deployment: its strategy, why, and its stages."""

    deployment_id: str
    application_id: str
    commit_hash: str
    strategy: Strategy  # quick_sync | pipeline: the planner's choice
    summary: str  # what a person reads first: "image helloworld: v1 → v2"
    reason: str  # which planner rule decided
    stages: tuple[PlannedStage, ...]
    running_commit_hash: str = ""
    config_filename: str = ""
    path: str = ""
    repository_id: str = ""
    skipped: dict[str, str] = msgspec.field(default_factory=dict)
    """Stage id → why its `skipOn` skips it (PipeCD's rule, decided when planning): the
    executor records those stages SKIPPED instead of running them."""
    version: str = ""
    """What it deploys, named by its Deployments' image tags (PipeCD's `determineVersion`:
    "v2", "v2 (web), 1.4 (sidecar)", or "unknown")."""
    diff: str = ""
    """The manifest diff the strategy was chosen from, as plan previews print it (running
    commit → this one; Secret values masked and the rest redacted by the diff, at most
    `DIFF_CHARS`); "" when there was nothing to compare (a first deployment, or an
    event recorded before plans carried it). The console's deployment page shows it."""
    config_text: str = ""
    """The application's config file at this commit, redacted, at most `CONFIG_CHARS`
    ("" before plans carried it): the console shows the one of the running commit."""


class DeploymentPlanFailed(Event, tag="deployment_plan_failed", frozen=True):
    """No plan could be made (bad config, render failure): the deployment ends here."""

    deployment_id: str
    application_id: str
    reason: str  # something a person can act on


class DeploymentCompleted(Event, tag="deployment_completed", frozen=True):
    """The deployment reached a final status (the executor's last word on it)."""

    deployment_id: str
    application_id: str
    status: DeploymentStatus  # SUCCESS | FAILURE | CANCELLED
    commit_hash: str = ""
    reason: str = ""


# Deployment chains (stream `chain-<chain_id>`; shared/chains.py) -------------------


class ChainNode(msgspec.Struct, frozen=True, kw_only=True):
    """One application of a chain's block, and the deployment the chain opens for it."""

    application_id: str
    deployment_id: str


class ChainBlock(msgspec.Struct, frozen=True, kw_only=True):
    """The applications of one block of a chain: they deploy at once, after the block before."""

    index: int  # 0: the deployment that started the chain
    nodes: tuple[ChainNode, ...]


class ChainStarted(Event, tag="chain_started", frozen=True):
    """A deployment with `postSync.chain` succeeded: its chain, with the applications each
    matcher found (block 0 is that deployment, block k the k-th matcher's applications)."""

    chain_id: str
    origin_deployment_id: str
    origin_application_id: str
    blocks: tuple[ChainBlock, ...]


class ChainBlockStarted(Event, tag="chain_block_started", frozen=True):
    """Every deployment of the blocks before succeeded: this block's deployments are opened."""

    chain_id: str
    index: int


class ChainDeploymentFinished(Event, tag="chain_deployment_finished", frozen=True):
    """A deployment of the chain reached a final status."""

    chain_id: str
    deployment_id: str
    status: DeploymentStatus  # SUCCESS | FAILURE | CANCELLED


class ChainCancelRequested(Event, tag="chain_cancel_requested", frozen=True):
    """Someone cancelled the chain; the deployments it still runs are cancelled too."""

    chain_id: str
    commander: str = ""


class ChainCompleted(Event, tag="chain_completed", frozen=True):
    """The chain ended: SUCCESS (every block), FAILURE (a deployment failed: later blocks
    never start), or CANCELLED (cancelled, or one of its deployments was)."""

    chain_id: str
    status: DeploymentStatus  # SUCCESS | FAILURE | CANCELLED
    reason: str = ""
    # The chain's origin, under the names the notifier routes and describes an event by.
    application_id: str = ""
    deployment_id: str = ""


# The executor's events (stream `deployment-<deployment_id>`; DESIGN §5) ----------


class DeploymentStarted(Event, tag="deployment_started", frozen=True):
    """The executor took the planned deployment up: PLANNED → RUNNING."""

    deployment_id: str
    application_id: str
    started_at: datetime
    timeout_s: float = 0.0  # the application's `spec.timeout` at the commit; 0: none
    executor: str = ""  # the replica that started it


class StageStarted(Event, tag="stage_started", frozen=True):
    """A stage began; `started_at` lets a WAIT resume with the time it has left."""

    deployment_id: str
    stage_id: str
    started_at: datetime
    name: str = ""


class StageCompleted(Event, tag="stage_completed", frozen=True):
    """A stage ended: SUCCESS | FAILURE | CANCELLED | SKIPPED | EXITED."""

    deployment_id: str
    stage_id: str
    status: StageStatus
    reason: str = ""
    completed_at: datetime | None = None


class DeploymentRollingBack(Event, tag="deployment_rolling_back", frozen=True):
    """The deployment failed or was cancelled with rollback: its rollback stages run now."""

    deployment_id: str
    application_id: str
    reason: str = ""


class DeploymentCancelRequested(Event, tag="deployment_cancel_requested", frozen=True):
    """Someone asked to cancel the deployment, rolling back or leaving things as they are."""

    deployment_id: str
    with_rollback: bool = True
    commander: str = ""


class StageApproved(Event, tag="stage_approved", frozen=True):
    """One approval of a WAIT_APPROVAL stage."""

    deployment_id: str
    stage_id: str
    approver: str


class StageSkipRequested(Event, tag="stage_skip_requested", frozen=True):
    """Someone asked to skip a stage (WAIT, WAIT_APPROVAL, ANALYSIS)."""

    deployment_id: str
    stage_id: str
    commander: str = ""


# Analysis (stream `analysis-<analysis_id>`, DESIGN §2, §8) -------------------------


class AnalysisRequested(Event, tag="analysis_requested", frozen=True):
    """The executor asks for the verdict of an ANALYSIS stage (the first event of the stream).

    `analysis_id` is derived from the deployment and stage (`analysis_id_of`), and the
    request is appended once (a new stream, a derived event id), so a restarted executor
    waits on the same analysis. The analysis service answers with `AnalysisConcluded`
    on the same stream.
    """

    analysis_id: str
    deployment_id: str
    application_id: str
    stage_id: str
    commit_hash: str
    running_commit_hash: str  # "" on an application's first deployment
    options_json: str  # the stage's `with:` block, as JSON
    requested_at: datetime


class AnalysisConcluded(Event, tag="analysis_concluded", frozen=True):
    """The analysis service's verdict on an `AnalysisRequested` (stream `analysis-<id>`)."""

    analysis_id: str
    deployment_id: str
    stage_id: str
    verdict: Verdict
    reason: str = ""
    judge: str = ""
    judge_version: str = ""


class AnalysisCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One check of an analysis as resolved at its start (templates and `appArgs` applied):
    everything its verdicts depend on, so they can be recomputed from the log alone."""

    key: str  # `metrics[0] error-rate` (the template's name, if any) / `https[0]`
    kind: CheckKind
    strategy: CheckStrategy
    interval_s: float
    provider: str = ""
    query: str = ""  # the query template (rendered per variant in each AnalysisMeasured)
    failure_limit: int = 0
    skip_on_no_data: bool = False
    deviation: Deviation = Deviation.EITHER
    expected_min: float | None = None
    expected_max: float | None = None
    timeout_s: float = 0.0
    method: str = ""  # HTTP checks
    expected_code: int = 0
    expected_response: str = ""


class AnalysisStarted(Event, tag="analysis_started", frozen=True):
    """The analysis service began measuring (or, after a restart or takeover, resumed).

    The first one's `started_at` is the analysis' clock: ticks fall at
    `started_at + k·interval` and it ends at `started_at + duration`, so a
    resumed analysis runs only the time it has left.
    """

    analysis_id: str
    deployment_id: str
    stage_id: str
    started_at: datetime
    application_id: str = ""
    analyzer: str = ""  # the replica and its lease token, `analysis:<instance>#<token>`
    judge: str = ""  # the comparison judge configured (`with.judge`), and its version
    judge_version: str = ""
    duration_s: float = 0.0  # the stage's `duration`
    checks: tuple[AnalysisCheck, ...] = ()
    skipped_checks: tuple[str, ...] = ()  # configured but not run, each with why (`logs[0]: …`)
    # PREVIOUS: the application's last successful analysis, whose windows are the control.
    previous_analysis_id: str = ""
    previous_started_at: datetime | None = None
    resumed: bool = False


class AnalysisMeasured(Event, tag="analysis_measured", frozen=True):
    """One raw measurement of one check at one tick: what was asked, and what came back.

    `values` are exactly as the provider gave them (Prometheus sends text, and
    `NaN` stays `NaN`), so a verdict can be recomputed from the log alone.
    """

    analysis_id: str
    check: str
    tick: int  # 1-based
    role: SampleRole = SampleRole.NONE  # NONE: THRESHOLD, HTTP
    variant: str = ""  # the variant the query was rendered for (or `previous`)
    provider: str = ""
    query: str = ""  # as rendered and sent (PromQL; `GET <url>` for an HTTP check)
    window_start: float = 0.0  # unix seconds
    window_end: float = 0.0
    step_s: float = 0.0
    timestamps: tuple[float, ...] = ()
    values: tuple[str, ...] = ()  # HTTP checks: the response body (its first 4 KiB)
    status_code: int = 0  # HTTP checks: the response's code (0: no response)
    error: str = ""  # the provider's error or a timeout; "" when it answered
    measured_at: datetime | None = None


class AnalysisTickJudged(Event, tag="analysis_tick_judged", frozen=True):
    """The verdict on one check after one tick, from the recorded measurements up to it.

    `statistics` are the judge's numbers as `repr` text (exact, and NaN-safe in JSON).
    """

    analysis_id: str
    check: str
    tick: int
    at_s: float  # seconds since the analysis started
    strategy: CheckStrategy
    outcome: TickOutcome
    reason: str
    judge: str  # `threshold` / `http` for the service's own checks, else the judge's name
    judge_version: str
    final: bool = False
    failures: int = 0  # failed ticks so far (provider errors and no data, for comparisons)
    statistics: tuple[tuple[str, str], ...] = ()


# API keys (stream `apikey-<key_id>`, owned by the api service) -------------------


class ApiKeyCreated(Event, tag="api_key_created", frozen=True):
    """An API key exists; only the SHA-256 of its secret is recorded, never the secret."""

    key_id: str
    name: str
    role: KeyRole
    secret_sha256: str  # hex
    creator: str = ""


class ApiKeyRevoked(Event, tag="api_key_revoked", frozen=True):
    """The key no longer authenticates anyone (the API notices within seconds)."""

    key_id: str
    revoker: str = ""


# Event watcher (stream `eventkey-<digest of name and labels>`, DESIGN §5) ----------


class EventRegistered(Event, tag="event_registered", frozen=True):
    """`slipway event register`: a named value (an image tag) for the event watcher to write.

    One stream per (name, labels), PipeCD's event key, so the newest registration
    of a key is the last `EventRegistered` of its stream: an older one is never
    written over a newer one. `event_id` is the registration's own id (the
    event's id in the log).
    """

    event_id: str
    name: str
    data: str
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    contexts: tuple[tuple[str, str], ...] = ()  # PipeCD's `--contexts`: commit trailers
    commit_hash: str = ""  # the commit that produced the value (PipeCD's `--commit-hash`)
    registrar: str = ""


class EventHandled(Event, tag="event_handled", frozen=True):
    """The event watcher of one repository acted on one registration (the gitwatcher).

    `status`: `SUCCESS` (committed, `commit_hash`), `NO_CHANGE` (the files held
    the value already), `OUTDATED` (a newer registration of the key exists),
    `FAILURE` (`description` says which file or field), `NOT_WATCHED` (no watcher
    of the repository matches). `branch` is where the commit went (a new branch
    and `pull_request_url` with `makePullRequest`).
    """

    event_id: str
    repository_id: str
    status: str  # SUCCESS | NO_CHANGE | OUTDATED | FAILURE | NOT_WATCHED
    description: str = ""
    commit_hash: str = ""
    branch: str = ""
    files: tuple[str, ...] = ()
    watchers: tuple[str, ...] = ()  # `app:<application id>` or `.pipe/<file>` that matched
    pull_request_url: str = ""


# Notifications (stream `notification-<notification_id>`, DESIGN §9) ---------------


class NotificationScheduled(Event, tag="notification_scheduled", frozen=True):
    """An event made a notification for a receiver; it will be sent (the stream's first event).

    `notification_id` is derived from the source event and the receiver, and this
    event is appended in the notifier consumer's transaction, so each (event,
    receiver) is scheduled once. `body` is exactly what is POSTed on every attempt.
    """

    notification_id: str
    receiver: str
    receiver_kind: ReceiverKind
    notification_type: str  # PipeCD's type without EVENT_, e.g. DEPLOYMENT_FAILED
    source_event_id: str
    source_stream_id: str
    body: str  # JSON
    application_id: str = ""
    deployment_id: str = ""


class NotificationAttemptFailed(Event, tag="notification_attempt_failed", frozen=True):
    """One attempt failed; another follows after `retry_in_s`."""

    notification_id: str
    attempt: int
    error: str
    retry_in_s: float
    status_code: int = 0  # 0: no HTTP response (connection refused, timeout)


class NotificationDelivered(Event, tag="notification_delivered", frozen=True):
    """The receiver accepted the notification (a 2xx answer)."""

    notification_id: str
    attempt: int
    status_code: int
    delivered_at: datetime


class NotificationFailed(Event, tag="notification_failed", frozen=True):
    """The notification was given up: attempts ran out or the receiver refused it for good."""

    notification_id: str
    attempts: int
    error: str  # the last one
    status_code: int = 0


# Service processes (stream `service-<service name>`, shared/lifecycle.py) ----------


class ServiceStarted(Event, tag="service_started", frozen=True):
    """A service process is ready: connected, its components running (PipeCD's PIPED_STARTED).

    Many replicas and restarts share the stream (appended with no version check);
    `instance` tells them apart. No settings, no secrets.
    """

    service: str
    instance: str
    version: str


class ServiceStopped(Event, tag="service_stopped", frozen=True):
    """A service process stopped (PipeCD's PIPED_STOPPED), recorded after its components
    finished or were cancelled: `reason` is why it began to stop (a signal, a crashed
    component, every component returning); `crashed` when that is a failure."""

    service: str
    instance: str
    version: str
    reason: str
    crashed: bool = False


# The relay (stream `relay-<relay name>`) ----------------------------------------


class EventPublishFailed(Event, tag="event_publish_failed", frozen=True):
    """The relay could not publish a logged event to NATS and no retry could, so it went on
    without it (consumers never see that event; `slipway` reads it from the log)."""

    event_id: str
    event_type: str
    stream_id: str
    global_position: int
    size_bytes: int
    reason: str


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
