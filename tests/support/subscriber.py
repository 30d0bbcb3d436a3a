"""A deployment story written straight to the log, for the subscriber tests.

The same facts the services record for the seed's story, in the same streams:
an application registered; v1 deployed (its first deployment); v2 whose
canary analysis fails and is rolled back; v3 deployed over v1; the
application deleted with its resources. Every CDEvent the mapping knows is
among what it maps to. Written in separate transactions, one per step, as
the services would.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from referencing import Registry, Resource

from shared.eventlog import ANY, START, EventStore, new_events, position_of
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisRequested,
    ApplicationDeleted,
    ApplicationRegistered,
    ApplicationResourcesDeleted,
    CommitObserved,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageCompleted,
    StageStarted,
)
from shared.events.vocabulary import (
    DeploymentStatus,
    StageName,
    StageStatus,
    Strategy,
    Trigger,
    Verdict,
)
from tests.support.paths import REPO_ROOT

CDEVENTS_SCHEMAS = REPO_ROOT.parent / "shared" / "compat" / "cdevents-v0.5.1"
"""The handbook's CDEvents v0.5.1 schemas, beside the checkout (`../shared`)."""

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def _stages(names: list[str]) -> tuple[PlannedStage, ...]:
    return tuple(
        PlannedStage(id=f"stage-{i}", name=StageName(n), index=i, visible=n != "ROLLBACK")
        for i, n in enumerate(names)
    )


def story_steps(app: str) -> list[tuple[str, list[Event]]]:
    """(stream id, events) in the order they are appended."""
    steps: list[tuple[str, list[Event]]] = [
        (
            f"application-{app}",
            [ApplicationRegistered(application_id=app, name=app, repository_id="cfg", path=app)],
        )
    ]
    running = ""
    for n, (commit, fails) in enumerate((("c1", False), ("c2", True), ("c3", False))):
        deployment = f"{app}-d{n}"
        stream = f"deployment-{deployment}"
        stages = _stages(
            ["K8S_CANARY_ROLLOUT", "ANALYSIS", "K8S_PRIMARY_ROLLOUT", "ROLLBACK"]
            if n == 1
            else ["K8S_SYNC"]
        )
        steps += [
            (
                "repository-cfg",
                [CommitObserved(repository_id="cfg", branch="main", commit_hash=commit)],
            ),
            (
                stream,
                [
                    DeploymentTriggered(
                        deployment_id=deployment,
                        application_id=app,
                        trigger=Trigger.ON_COMMIT,
                        commit_hash=commit,
                    )
                ],
            ),
            (
                stream,
                [
                    DeploymentPlanned(
                        deployment_id=deployment,
                        application_id=app,
                        commit_hash=commit,
                        strategy=Strategy.PIPELINE if n == 1 else Strategy.QUICK_SYNC,
                        summary=f"image {app}: {commit}",
                        reason="test",
                        stages=stages,
                        running_commit_hash=running,
                    ),
                    DeploymentStarted(deployment_id=deployment, application_id=app, started_at=NOW),
                ],
            ),
        ]
        for stage in stages[:2] if fails else stages:
            steps.append(
                (
                    stream,
                    [StageStarted(deployment_id=deployment, stage_id=stage.id, started_at=NOW)],
                )
            )
            if stage.name == "ANALYSIS":
                analysis = f"analysis-{deployment}"
                steps += [
                    (
                        analysis,
                        [
                            AnalysisRequested(
                                analysis_id=deployment,
                                deployment_id=deployment,
                                application_id=app,
                                stage_id=stage.id,
                                commit_hash=commit,
                                running_commit_hash=running,
                                options_json="{}",
                                requested_at=NOW,
                            )
                        ],
                    ),
                    (
                        analysis,
                        [
                            AnalysisConcluded(
                                analysis_id=deployment,
                                deployment_id=deployment,
                                stage_id=stage.id,
                                verdict=Verdict.FAILURE,
                                reason="error rate 12% > 5%",
                            )
                        ],
                    ),
                ]
            failed = fails and stage.name == "ANALYSIS"
            steps.append(
                (
                    stream,
                    [
                        StageCompleted(
                            deployment_id=deployment,
                            stage_id=stage.id,
                            status=StageStatus.FAILURE if failed else StageStatus.SUCCESS,
                        )
                    ],
                )
            )
        if fails:
            rollback = stages[-1]
            steps += [
                (
                    stream,
                    [
                        DeploymentRollingBack(
                            deployment_id=deployment, application_id=app, reason="analysis failed"
                        ),
                        StageStarted(
                            deployment_id=deployment, stage_id=rollback.id, started_at=NOW
                        ),
                    ],
                ),
                (
                    stream,
                    [
                        StageCompleted(
                            deployment_id=deployment,
                            stage_id=rollback.id,
                            status=StageStatus.SUCCESS,
                        ),
                        DeploymentCompleted(
                            deployment_id=deployment,
                            application_id=app,
                            status=DeploymentStatus.FAILURE,
                            commit_hash=commit,
                            reason="analysis failed",
                        ),
                    ],
                ),
            ]
        else:
            steps.append(
                (
                    stream,
                    [
                        DeploymentCompleted(
                            deployment_id=deployment,
                            application_id=app,
                            status=DeploymentStatus.SUCCESS,
                            commit_hash=commit,
                        )
                    ],
                )
            )
            running = commit
    steps += [
        (f"application-{app}", [ApplicationDeleted(application_id=app, cascade=True)]),
        (f"drift-{app}", [ApplicationResourcesDeleted(application_id=app, resources=("a/b/c/d",))]),
    ]
    return steps


async def append_story(store: EventStore, app: str | None = None) -> str:
    """Append the story of application `app` (a fresh id if None); its id."""
    app = app or "app" + uuid.uuid4().hex[:8]
    for stream, events in story_steps(app):
        await store.append(stream, new_events(events), expected_version=ANY)
    return app


async def all_events(store: EventStore) -> list[RecordedEvent]:
    """The whole log in commit order (what every subscriber must end up with)."""
    out: list[RecordedEvent] = []
    while batch := await store.read_all(position_of(out[-1]) if out else START):
        out += batch
    return out


def cdevent_validators() -> dict[str, jsonschema.Draft202012Validator]:
    """A validator per CDEvent type, from the handbook's v0.5.1 schemas (skip without them)."""
    if not CDEVENTS_SCHEMAS.is_dir():
        pytest.skip(f"the CDEvents v0.5.1 schemas are not beside the checkout ({CDEVENTS_SCHEMAS})")
    documents = [json.loads(p.read_text()) for p in CDEVENTS_SCHEMAS.rglob("*.json")]
    registry: Registry[Any] = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in documents
    )
    validators = {}
    for document in documents:
        context = document.get("properties", {}).get("context", {}).get("properties", {})
        for kind in context.get("type", {}).get("enum", []):
            validators[kind] = jsonschema.Draft202012Validator(
                document, registry=registry, format_checker=jsonschema.FormatChecker()
            )
    return validators


def validate_cdevent(validators: dict[str, jsonschema.Draft202012Validator], body: bytes) -> str:
    """The short type (`pipelinerun.queued`) of a CDEvents CloudEvent, validated against its
    v0.5.1 schema; AssertionError if it does not validate."""
    envelope = JSONFormat().read(CloudEvent, body)
    cdevent = envelope.get_data()
    assert isinstance(cdevent, dict)
    kind = cdevent["context"]["type"]
    assert envelope.get_type() == kind and envelope.get_id() == cdevent["context"]["id"]
    assert kind in validators, f"no schema for {kind}"
    errors = list(validators[kind].iter_errors(cdevent))
    assert not errors, f"{kind}: {[e.message for e in errors]}"
    return str(kind).removeprefix("dev.cdevents.").rsplit(".", 3)[0]
