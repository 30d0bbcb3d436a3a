"""What a notification says about its application and deployment, folded from their streams.

Pure folds: the notifier reads `application-<id>`, `appconfig-<id>` (the
config file's labels, which routes match together with the registration's)
and `deployment-<id>` (the latter two only up to the event being notified, so
a message describes things as they were then, also when it is rendered again
after a restart).

`DeploymentFacts` is not the deployment's state (`shared.deployments`, which
the executor and the API fold): it is what a message says at one moment —
the stage started last, the last approver, why it failed (a stage's failure,
the rollback's reason) and a status only once it is decided — and it travels
in the message itself (the generic webhook's JSON body), so its shape is
the receivers' and stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from shared.events.base import Event
from shared.events.catalog import (
    ApplicationConfigObserved,
    ApplicationRegistered,
    ConfigMention,
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentTriggered,
    StageApproved,
    StageCompleted,
    StageStarted,
)
from shared.labels import config_labels_of, merge_labels
from shared.planning.version import shown_version

__all__ = [
    "AppFacts",
    "DeploymentFacts",
    "config_mentions_of",
    "fold_application",
    "fold_deployment",
]


class AppFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a notification says about an application: id, name, labels."""

    application_id: str
    name: str
    labels: tuple[tuple[str, str], ...] = ()


class DeploymentFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a notification says about a deployment, folded from its events."""

    deployment_id: str
    application_id: str = ""
    trigger: str = ""
    commander: str = ""
    commit_hash: str = ""
    commit_message: str = ""
    commit_author: str = ""
    strategy: str = ""
    summary: str = ""
    version: str = ""
    """The version its plan deploys (its images' tags, as PipeCD's deployment `version`),
    clipped to `VERSION_SHOWN_MAX`; "" until planned."""
    stage_id: str = ""
    stage_name: str = ""
    """The stage started last: the one running, or the one the deployment ended in."""
    stage_names: tuple[tuple[str, str], ...] = ()
    """(id, name) of each planned stage."""
    status: str = ""
    reason: str = ""
    """Why it failed, was cancelled or rolled back, as the executor or planner said."""
    approver: str = ""
    cancelled_by: str = ""


def fold_application(events: Iterable[Event], config: Iterable[Event] = ()) -> AppFacts | None:
    """The application as its latest registration describes it, with the labels of its config
    file (`config`: its `appconfig-<id>` stream) over the registration's; None if never
    registered."""
    facts: AppFacts | None = None
    for event in events:
        if isinstance(event, ApplicationRegistered):
            facts = AppFacts(
                application_id=event.application_id, name=event.name, labels=event.labels
            )
    config_labels = config_labels_of(config)
    if facts is None or not config_labels:
        return facts
    merged = merge_labels(facts.labels, config_labels)
    return msgspec.structs.replace(facts, labels=tuple(sorted(merged.items())))


def config_mentions_of(config: Iterable[Event]) -> tuple[ConfigMention, ...]:
    """The `notification.mentions` an `appconfig-<id>` stream last recorded (() for none)."""
    mentions: tuple[ConfigMention, ...] = ()
    for event in config:
        if isinstance(event, ApplicationConfigObserved):
            mentions = event.mentions
    return mentions


def fold_deployment(
    deployment_id: str, events: Iterable[Event], facts: DeploymentFacts | None = None
) -> DeploymentFacts:
    """The deployment after `events` (the stream's, in order), continuing from `facts` (what
    the events before them folded to) when given."""
    facts = facts or DeploymentFacts(deployment_id=deployment_id)
    replace = msgspec.structs.replace
    for event in events:
        match event:
            case DeploymentTriggered():
                facts = replace(
                    facts,
                    application_id=event.application_id,
                    trigger=event.trigger,
                    commander=event.commander,
                    commit_hash=event.commit_hash,
                    commit_message=event.commit_message,
                    commit_author=event.commit_author,
                )
            case DeploymentPlanned():
                facts = replace(
                    facts,
                    application_id=event.application_id,
                    commit_hash=facts.commit_hash or event.commit_hash,
                    strategy=event.strategy,
                    summary=event.summary,
                    version=shown_version(event.version),
                    stage_names=tuple((s.id, s.name) for s in event.stages),
                )
            case DeploymentPlanFailed():
                facts = replace(facts, status="FAILURE", reason=event.reason)
            case StageStarted():
                name = event.name or dict(facts.stage_names).get(event.stage_id, "")
                facts = replace(facts, stage_id=event.stage_id, stage_name=name)
            case StageCompleted(status="FAILURE", reason=reason) if reason:
                facts = replace(facts, reason=reason)
            case StageApproved():
                facts = replace(facts, approver=event.approver)
            case DeploymentCancelRequested():
                facts = replace(facts, cancelled_by=event.commander)
            case DeploymentRollingBack():
                facts = replace(facts, status="ROLLING_BACK", reason=event.reason or facts.reason)
            case DeploymentCompleted():
                facts = replace(
                    facts,
                    status=event.status,
                    reason=event.reason or facts.reason,
                    commit_hash=facts.commit_hash or event.commit_hash,
                )
    return facts
