"""Slipway's deployment facts in the CD Foundation's CDEvents vocabulary (v0.5.1).

Pure: a recorded event and the events of its own stream before it (`history`,
oldest first) come in, zero or more CDEvents (plain dicts, `context` +
`subject`, ready to validate against the v0.5.1 JSON schemas) come out. The
history is what lets one event say more than it carries: a successful
`DeploymentCompleted` is `service.deployed` on an application's first
deployment and `service.upgraded` on a later one (the plan's
`running_commit_hash` tells), and `service.rolledback` when the deployment
rolled back; a `StageCompleted` names its stage from the plan.

The mapping (docs/events.md has it as a table):

| Slipway event                        | CDEvents                                          |
|--------------------------------------|---------------------------------------------------|
| commit_observed                      | change.merged                                     |
| application_registered               | environment.created                               |
| deployment_triggered                 | pipelinerun.queued                                |
| deployment_started                   | pipelinerun.started                               |
| stage_started / stage_completed      | taskrun.started / taskrun.finished                |
| analysis_concluded (failure)         | incident.detected                                 |
| deployment_rolling_back              | incident.detected                                 |
| deployment_completed                 | pipelinerun.finished, and on SUCCESS              |
|                                      | service.deployed (first) or service.upgraded +    |
|                                      | environment.modified; after a rollback            |
|                                      | service.rolledback + incident.resolved            |
| application_resources_deleted        | service.removed + environment.deleted             |

Identities: a pipeline run is a deployment (`subject.id` = deployment id), a
task run is `<deployment id>/<stage id>`, the environment and the service are
the application (`application id`: a Slipway application is one service in
one environment), an artifact is `pkg:generic/<application id>@<commit>`,
a pipeline run's `uri` is `urn:slipway:deployment:<id>`,
and an incident is the deployment it happened to (a failed analysis and the
rollback it causes detect the same incident, which a receiver keys by
`subject.id`). Each CDEvent's `context.id` is derived from the Slipway event
id and the CDEvent type, so a redelivered event maps to the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

from shared.events.base import RecordedEvent
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisRequested,
    ApplicationRegistered,
    ApplicationResourcesDeleted,
    CommitObserved,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    StageCompleted,
    StageStarted,
)

__all__ = ["CDEVENTS_VERSION", "MAPPED_TYPES", "cdevent_type", "cdevents_of"]

CDEVENTS_VERSION: Final = "0.5.1"
_EVENT_VERSION: Final = "0.3.0"  # every event type this mapping emits is at 0.3.0 in v0.5.1
_IDS: Final = uuid.UUID("0b7f3c52-8d7e-4a44-b0d8-2f4b2a6e9c13")

MAPPED_TYPES: Final = frozenset(
    {
        "commit_observed",
        "application_registered",
        "deployment_triggered",
        "deployment_started",
        "stage_started",
        "stage_completed",
        "analysis_concluded",
        "deployment_rolling_back",
        "deployment_completed",
        "application_resources_deleted",
    }
)
"""The Slipway event types that may map to a CDEvent; any other maps to none."""

_OUTCOMES: Final = {"SUCCESS": "success", "FAILURE": "failure", "CANCELLED": "cancel"}


def cdevent_type(short: str) -> str:
    """`pipelinerun.queued` → `dev.cdevents.pipelinerun.queued.0.3.0`."""
    return f"dev.cdevents.{short}.{_EVENT_VERSION}"


def cdevents_of(
    recorded: RecordedEvent, history: Sequence[RecordedEvent] = (), *, source: str = "/slipway"
) -> list[dict[str, Any]]:
    """The CDEvents `recorded` stands for, given the events of its stream before it."""
    out = _Out(recorded, source)
    event = recorded.event
    if isinstance(event, CommitObserved):
        out.add("change.merged", event.commit_hash, {"repository": {"id": event.repository_id}})
    elif isinstance(event, ApplicationRegistered):
        out.add("environment.created", event.application_id, {"name": event.name})
    elif isinstance(event, DeploymentTriggered):
        out.add(
            "pipelinerun.queued",
            event.deployment_id,
            _pipeline(event.application_id, event.deployment_id),
        )
    elif isinstance(event, DeploymentStarted):
        out.add(
            "pipelinerun.started",
            event.deployment_id,
            _pipeline(event.application_id, event.deployment_id),
        )
    elif isinstance(event, StageStarted):
        out.add(
            "taskrun.started",
            f"{event.deployment_id}/{event.stage_id}",
            _task(event.deployment_id, event.name or _stage_name(history, event.stage_id)),
        )
    elif isinstance(event, StageCompleted):
        content = _task(event.deployment_id, _stage_name(history, event.stage_id))
        content["outcome"] = event.status.lower()
        if event.reason:
            content["errors"] = event.reason
        out.add("taskrun.finished", f"{event.deployment_id}/{event.stage_id}", content)
    elif isinstance(event, AnalysisConcluded):
        if event.verdict == "failure":
            application = _analysed_application(history)
            out.add("incident.detected", event.deployment_id, _incident(application, event.reason))
    elif isinstance(event, DeploymentRollingBack):
        out.add(
            "incident.detected",
            event.deployment_id,
            _incident(event.application_id, event.reason),
        )
    elif isinstance(event, DeploymentCompleted):
        _completed(out, event, history)
    elif isinstance(event, ApplicationResourcesDeleted):
        environment = {"environment": {"id": event.application_id}}
        out.add("service.removed", event.application_id, environment)
        out.add("environment.deleted", event.application_id, {"name": event.application_id})
    return out.events


def _completed(out: _Out, event: DeploymentCompleted, history: Sequence[RecordedEvent]) -> None:
    finished = _pipeline(event.application_id, event.deployment_id)
    finished["outcome"] = _OUTCOMES.get(event.status, "error")
    if event.reason:
        finished["errors"] = event.reason
    out.add("pipelinerun.finished", event.deployment_id, finished)
    rolled_back = any(isinstance(e.event, DeploymentRollingBack) for e in history)
    plan = next((e.event for e in history if isinstance(e.event, DeploymentPlanned)), None)
    environment = {"id": event.application_id}
    if rolled_back:
        # Back on what ran before; on a first deployment there was nothing, so no artifact.
        running = plan.running_commit_hash if plan is not None else ""
        if running:
            artifact = _artifact(event.application_id, running)
            out.add(
                "service.rolledback",
                event.application_id,
                {"environment": environment, "artifactId": artifact},
            )
        out.add(
            "incident.resolved",
            event.deployment_id,
            _incident(event.application_id, event.reason or "rolled back"),
        )
        return
    if event.status != "SUCCESS":
        return
    commit = event.commit_hash or (plan.commit_hash if plan is not None else "")
    if not commit:
        return  # no artifact to name: the deployment carries no commit
    content = {"environment": environment, "artifactId": _artifact(event.application_id, commit)}
    first = plan is not None and not plan.running_commit_hash
    out.add("service.deployed" if first else "service.upgraded", event.application_id, content)
    out.add("environment.modified", event.application_id, {"name": event.application_id})


class _Out:
    """The CDEvents of one Slipway event, each with an id derived from the event's."""

    def __init__(self, recorded: RecordedEvent, source: str) -> None:
        self.recorded = recorded
        self.source = source
        self.events: list[dict[str, Any]] = []

    def add(self, short: str, subject_id: str, content: dict[str, Any]) -> None:
        kind = cdevent_type(short)
        context: dict[str, Any] = {
            "specversion": CDEVENTS_VERSION,
            "id": str(uuid.uuid5(_IDS, f"{self.recorded.event_id}:{kind}")),
            "source": self.source,
            "type": kind,
            "timestamp": _timestamp(self.recorded),
        }
        if self.recorded.metadata.correlation_id:
            context["chainId"] = self.recorded.metadata.correlation_id
        subject = {"id": subject_id, "source": self.source, "content": content}
        self.events.append({"context": context, "subject": subject})


def _timestamp(recorded: RecordedEvent) -> str:
    at = recorded.metadata.occurred_at or recorded.recorded_at
    return at.isoformat().replace("+00:00", "Z")


def _pipeline(application_id: str, deployment_id: str) -> dict[str, Any]:
    return {"pipelineName": application_id, "uri": f"urn:slipway:deployment:{deployment_id}"}


def _task(deployment_id: str, name: str) -> dict[str, Any]:
    return {"taskName": name or "stage", "pipelineRun": {"id": deployment_id}}


def _incident(application_id: str, description: str) -> dict[str, Any]:
    content: dict[str, Any] = {
        "environment": {"id": application_id or "unknown"},
        "service": {"id": application_id or "unknown"},
    }
    if description:
        content["description"] = description
    return content


def _artifact(application_id: str, commit: str) -> str:
    return f"pkg:generic/{application_id}@{commit}"


def _stage_name(history: Sequence[RecordedEvent], stage_id: str) -> str:
    for recorded in reversed(history):
        event = recorded.event
        if isinstance(event, StageStarted) and event.stage_id == stage_id and event.name:
            return event.name
        if isinstance(event, DeploymentPlanned):
            for stage in event.stages:
                if stage.id == stage_id:
                    return stage.name
    return stage_id


def _analysed_application(history: Sequence[RecordedEvent]) -> str:
    for recorded in history:
        if isinstance(recorded.event, AnalysisRequested):
            return recorded.event.application_id
    return ""
