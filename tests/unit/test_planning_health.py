"""Live workload health (shared.planning.health) and how drift records its changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.drift.decider import DRIFT, DriftState, Judge
from shared.config.manifests import Manifest
from shared.decider import fold
from shared.events.base import Event
from shared.events.catalog import ApplicationHealthChanged
from shared.planning.drift import DriftResult
from shared.planning.health import Health, health_of


def _workload(
    kind: str, name: str, status: Any, *, replicas: int = 2, generation: int = 3
) -> Manifest:
    body = {
        "metadata": {"name": name, "namespace": "shop", "generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }
    return Manifest(api_version="apps/v1", kind=kind, name=name, namespace="shop", body=body)


READY = {"observedGeneration": 3, "updatedReplicas": 2, "readyReplicas": 2}
CONFIG = Manifest(api_version="v1", kind="ConfigMap", name="c", namespace="shop", body={})


def test_ready_and_updated_workloads_are_healthy() -> None:
    daemons = {
        "observedGeneration": 3,
        "desiredNumberScheduled": 3,
        "updatedNumberScheduled": 3,
        "numberReady": 3,
    }
    live = [_workload("Deployment", "web", READY), _workload("DaemonSet", "agent", daemons), CONFIG]
    assert health_of(live) == Health(True, "2 workloads updated and ready")
    assert health_of([CONFIG]) == Health(True, "no workloads")


def test_each_way_of_being_unhealthy_is_named() -> None:
    cases = [
        ("generation 3 not observed yet", {**READY, "observedGeneration": 2}),
        ("1/2 updated", {**READY, "updatedReplicas": 1}),
        ("0/2 ready", {**READY, "readyReplicas": 0}),
        ("0/2 updated", {**READY, "updatedReplicas": "2"}),  # odd shapes read, never a crash
        ("generation 3 not observed yet", "not a mapping"),
    ]
    for problem, status in cases:
        verdict = health_of([_workload("StatefulSet", "db", status), CONFIG])
        assert verdict == Health(False, f"StatefulSet shop/db: {problem}")
    many = health_of([_workload("Deployment", f"w{i}", {}) for i in range(5)])
    assert many.summary.endswith("(and 2 more)") and not many.healthy


def _judge(health: Health | None) -> Judge:
    return Judge(
        result=DriftResult("SYNCED", "in sync", ""),
        application_id="web",
        commit_hash="c1",
        on_out_of_sync=False,
        now=datetime(2026, 1, 1, tzinfo=UTC),
        health=health,
    )


def _health_events(events: Sequence[Event]) -> list[ApplicationHealthChanged]:
    return [e for e in events if isinstance(e, ApplicationHealthChanged)]


def test_drift_records_health_when_it_changes_with_what_it_was() -> None:
    first = DRIFT.decide(DriftState(), _judge(Health(True, "1 workload updated and ready")))
    [healthy] = _health_events(first)
    assert (healthy.healthy, healthy.previous) == (True, "")
    state = fold(DRIFT, first)
    assert DRIFT.decide(state, _judge(Health(True, "1 workload updated and ready"))) == []
    assert DRIFT.decide(state, _judge(None)) == []  # not read: nothing said
    [sick] = _health_events(
        DRIFT.decide(state, _judge(Health(False, "Deployment shop/web: 0/2 ready")))
    )
    assert (sick.healthy, sick.previous, sick.summary) == (
        False,
        "HEALTHY",
        "Deployment shop/web: 0/2 ready",
    )
    recovered = DRIFT.decide(
        dataclasses.replace(state, healthy=False), _judge(Health(True, "fine"))
    )
    assert [(e.healthy, e.previous) for e in _health_events(recovered)] == [(True, "UNHEALTHY")]
