"""Deployments as the executor's decider sees them in tests: a planned canary pipeline, its
stages, and the state folded from its events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.executor.decider import (
    Deployment,
    fold,
)
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentPlanned,
    DeploymentTriggered,
    PlannedStage,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


D = "d1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stage(
    stage_id: str, name: str, index: int, options: dict[str, object] | None = None, **kw: object
) -> PlannedStage:
    return PlannedStage(
        id=stage_id,
        name=vocabulary.StageName(name),
        index=index,
        options_json=json.dumps(options or {}),
        requires=(f"s{index - 1}",) if index else (),
        **kw,  # type: ignore[arg-type]
    )


ROLLBACK = PlannedStage(
    id="Rollback", name=vocabulary.StageName("ROLLBACK"), index=9, predefined=True, visible=False
)


CANARY = (
    stage("s0", "K8S_CANARY_ROLLOUT", 0, {"replicas": "10%"}),
    stage("s1", "WAIT", 1, {"duration": "30s"}),
    stage("s2", "K8S_PRIMARY_ROLLOUT", 2),
    stage("s3", "K8S_CANARY_CLEAN", 3),
    ROLLBACK,
)


def planned(stages: Sequence[PlannedStage] = CANARY, running: str = "r" * 40) -> list[Event]:
    return [
        DeploymentTriggered(
            deployment_id=D,
            application_id="app",
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="c" * 40,
        ),
        DeploymentPlanned(
            deployment_id=D,
            application_id="app",
            commit_hash="c" * 40,
            strategy=vocabulary.Strategy("pipeline"),
            summary="image web: v1 → v2",
            reason="because",
            stages=tuple(stages),
            running_commit_hash=running,
        ),
    ]


def state_of(events: Sequence[Event]) -> Deployment:
    return fold(enumerate(events))
