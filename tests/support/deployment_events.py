"""Deployment streams written straight to the log, as the services would write them, for the
API tests that read them back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """Append `events` to the deployment's stream; the global position of the last one."""
    stream = f"deployment-{deployment_id}"
    result = await store.append(stream, new_events(events), expected_version=None)
    return result.global_positions[-1]


def triggered(
    deployment_id: str,
    app: str = "app1",
    *,
    commit: str = "c1",
    trigger: vocabulary.Trigger = vocabulary.Trigger.ON_COMMIT,
    message: str = "",
) -> DeploymentTriggered:
    """The deployment's first event, as the gitwatcher or the API records it."""
    return DeploymentTriggered(
        deployment_id=deployment_id,
        application_id=app,
        trigger=trigger,
        commit_hash=commit,
        commit_message=message,
    )


def pipeline(*names: str, options: Mapping[int, str] | None = None) -> tuple[PlannedStage, ...]:
    """Planned stages `stage-0`, `stage-1`, … of the named kinds; `options` by index (JSON)."""
    return tuple(
        PlannedStage(
            id=f"stage-{index}",
            name=vocabulary.StageName(name),
            index=index,
            options_json=(options or {}).get(index, "{}"),
        )
        for index, name in enumerate(names)
    )


def planned(
    deployment_id: str,
    stages: Sequence[PlannedStage],
    app: str = "app1",
    *,
    commit: str = "c1",
    summary: str = "",
    reason: str = "",
    version: str = "",
) -> DeploymentPlanned:
    """A pipeline plan of `stages`, as the planner records it (`version`: what it deploys)."""
    return DeploymentPlanned(
        deployment_id=deployment_id,
        application_id=app,
        commit_hash=commit,
        strategy=vocabulary.Strategy.PIPELINE,
        summary=summary,
        reason=reason,
        stages=tuple(stages),
        version=version,
    )


async def deployment(
    store: EventStore,
    app: str = "app1",
    *,
    running_stage: str | None = "stage-0",
    version: str = "",
) -> str:
    """A deployment planned with STAGES (deploying `version`) and running, `running_stage`
    started."""
    d = new_id()
    await write(
        store,
        d,
        triggered(d, app, commit="c0ffee1", message="Bump image to v2\n\nbody"),
        planned(
            d,
            STAGES,
            app,
            commit="c0ffee1",
            summary="image web: v1 → v2",
            reason="the pod template changed",
            version=version,
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
