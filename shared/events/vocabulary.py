"""The words events carry: every closed set of values an event field may hold.

Each is a `StrEnum`, used as the field's type in `catalog/`. msgspec encodes
a `StrEnum` member as its value, so the wire is the same text it always was
(the golden files in `tests/golden/events/` prove it), while a decoder now
refuses a value outside the set, naming the field, instead of letting a typo
travel on as a string. Compare members, never raw strings.
"""

from __future__ import annotations

import enum

__all__ = [
    "CheckKind",
    "CheckStrategy",
    "CommitSource",
    "DeploymentStatus",
    "Deviation",
    "KeyRole",
    "ReceiverKind",
    "ResourceHealth",
    "SampleRole",
    "StageName",
    "StageStatus",
    "Strategy",
    "SyncState",
    "TickOutcome",
    "Trigger",
    "Verdict",
    "WebhookProvider",
]


class Strategy(enum.StrEnum):
    """How a deployment deploys: `auto` lets the planner choose; the others force it.

    A plan (`DeploymentPlanned`) is always `quick_sync` or `pipeline`.
    """

    AUTO = "auto"
    QUICK_SYNC = "quick_sync"
    PIPELINE = "pipeline"


class Trigger(enum.StrEnum):
    """What asked for a deployment (PipeCD's `DeploymentTrigger` kinds)."""

    ON_COMMIT = "on_commit"
    ON_COMMAND = "on_command"
    ON_OUT_OF_SYNC = "on_out_of_sync"
    ON_CHAIN = "on_chain"


class DeploymentStatus(enum.StrEnum):
    """A deployment's status; `DeploymentCompleted` carries one of the last three."""

    PENDING = "PENDING"
    PLANNED = "PLANNED"
    RUNNING = "RUNNING"
    ROLLING_BACK = "ROLLING_BACK"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"


class StageStatus(enum.StrEnum):
    """A stage's status; `StageCompleted` carries one of the last five."""

    NOT_STARTED_YET = "NOT_STARTED_YET"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    EXITED = "EXITED"


class SyncState(enum.StrEnum):
    """An application's sync state; drift records only SYNCED and OUT_OF_SYNC."""

    UNKNOWN = "UNKNOWN"
    SYNCED = "SYNCED"
    OUT_OF_SYNC = "OUT_OF_SYNC"
    DEPLOYING = "DEPLOYING"


class Verdict(enum.StrEnum):
    """The analysis service's answer to an ANALYSIS stage."""

    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"


class CommitSource(enum.StrEnum):
    """How the gitwatcher learned of a commit."""

    POLL = "poll"
    WEBHOOK = "webhook"


class StageName(enum.StrEnum):
    """Every stage a plan may hold. What each one is — its options, who runs it, whether
    it is timed or skippable, what undoes it — is its `StageKind` (`shared.stagekinds`)."""

    K8S_SYNC = "K8S_SYNC"
    K8S_PRIMARY_ROLLOUT = "K8S_PRIMARY_ROLLOUT"
    K8S_CANARY_ROLLOUT = "K8S_CANARY_ROLLOUT"
    K8S_CANARY_CLEAN = "K8S_CANARY_CLEAN"
    K8S_BASELINE_ROLLOUT = "K8S_BASELINE_ROLLOUT"
    K8S_BASELINE_CLEAN = "K8S_BASELINE_CLEAN"
    K8S_TRAFFIC_ROUTING = "K8S_TRAFFIC_ROUTING"
    WAIT = "WAIT"
    WAIT_APPROVAL = "WAIT_APPROVAL"
    ANALYSIS = "ANALYSIS"
    SCRIPT_RUN = "SCRIPT_RUN"
    SCRIPT_RUN_ROLLBACK = "SCRIPT_RUN_ROLLBACK"
    ROLLBACK = "ROLLBACK"
    CUSTOM_SYNC = "CUSTOM_SYNC"


class WebhookProvider(enum.StrEnum):
    """Who sent a webhook to the gitwatcher."""

    GITHUB = "github"
    GITLAB = "gitlab"


class CheckKind(enum.StrEnum):
    """What an analysis check measures: a metrics query, or an HTTP request."""

    METRICS = "metrics"
    HTTP = "http"


class CheckStrategy(enum.StrEnum):
    """How an analysis check judges what it measured (PipeCD's analysis strategies)."""

    THRESHOLD = "THRESHOLD"
    PREVIOUS = "PREVIOUS"
    CANARY_BASELINE = "CANARY_BASELINE"
    CANARY_PRIMARY = "CANARY_PRIMARY"
    HTTP = "HTTP"


class Deviation(enum.StrEnum):
    """Which way a comparison fails: the experiment higher, lower, or either."""

    EITHER = "EITHER"
    HIGH = "HIGH"
    LOW = "LOW"


class SampleRole(enum.StrEnum):
    """Which side of a comparison a measurement is ("" for THRESHOLD and HTTP checks), and
    for a ratio of rates, which counter behind it (`shared.analysis.ratio_query`)."""

    NONE = ""
    EXPERIMENT = "experiment"
    CONTROL = "control"
    EXPERIMENT_EVENTS = "experiment_events"
    EXPERIMENT_TOTAL = "experiment_total"
    CONTROL_EVENTS = "control_events"
    CONTROL_TOTAL = "control_total"


class TickOutcome(enum.StrEnum):
    """A check's verdict after one tick: no decision yet, passed, or failed."""

    CONTINUE = "continue"
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"


class ResourceHealth(enum.StrEnum):
    """One live object's health, as the drift service reads it (`shared.platform.livetree`)."""

    HEALTHY = "HEALTHY"
    PROGRESSING = "PROGRESSING"  # not there yet: pods starting, a rollout under way
    UNHEALTHY = "UNHEALTHY"  # failed or stuck: a crash loop, a missed progress deadline
    UNKNOWN = "UNKNOWN"  # a status it cannot read


class KeyRole(enum.StrEnum):
    """What an API key may do, each role including the ones before it."""

    READ_ONLY = "read-only"
    READ_WRITE = "read-write"
    ADMIN = "admin"


class ReceiverKind(enum.StrEnum):
    """Where a notification goes."""

    SLACK = "slack"
    WEBHOOK = "webhook"
