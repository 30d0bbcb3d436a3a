"""Deployment streams written straight to the log, as the services would write them, for the
API tests that read them back."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.eventlog import EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageStarted,
)
from shared.ids import new_id


async def write(store: EventStore, deployment_id: str, *events: Event) -> int:
    stream = f"deployment-{deployment_id}"
    result = await store.append(stream, new_events(events), expected_version=None)
    return result.global_positions[-1]


async def deployment(
    store: EventStore, app: str = "app1", *, running_stage: str | None = "stage-0"
) -> str:
    """A deployment planned with STAGES and running, `running_stage` started."""
    d = new_id()
    await write(
        store,
        d,
        DeploymentTriggered(
            deployment_id=d,
            application_id=app,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="c0ffee1",
            commit_message="Bump image to v2\n\nbody",
        ),
        DeploymentPlanned(
            deployment_id=d,
            application_id=app,
            commit_hash="c0ffee1",
            strategy=vocabulary.Strategy("pipeline"),
            summary="image web: v1 → v2",
            reason="the pod template changed",
            stages=STAGES,
        ),
        DeploymentStarted(deployment_id=d, application_id=app, started_at=T0),
    )
    if running_stage is not None:
        await write(store, d, StageStarted(deployment_id=d, stage_id=running_stage, started_at=T0))
    return d


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


STAGES = (
    PlannedStage(
        id="stage-0",
        name=vocabulary.StageName("WAIT_APPROVAL"),
        index=0,
        options_json='{"approvers": ["alice"]}',
    ),
    PlannedStage(id="stage-1", name=vocabulary.StageName("K8S_PRIMARY_ROLLOUT"), index=1),
    PlannedStage(id="stage-2", name=vocabulary.StageName("ANALYSIS"), index=2),
    PlannedStage(id="stage-3", name=vocabulary.StageName("ROLLBACK"), index=3, visible=False),
)
