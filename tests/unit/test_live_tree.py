"""The live tree (shared/platform/livetree.py): cluster objects → the bounded, redacted event,
and back to a nested forest for the console and the CLI."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from services.drift.live_resources import record_live_resources
from shared.eventlog.store import DEFAULT_MAX_EVENT_BYTES
from shared.events.catalog import (
    ApplicationLiveResourcesObserved,
    LiveResource,
    default_registry,
)
from shared.events.vocabulary import ResourceHealth
from shared.platform.livetree import changed, health_of, observe
from shared.resourcetree import nest, shows_providers
from shared.testing import InMemoryStore
from slipway_cli.app_live import print_live_tree

SECRET = "hunter2-s3cr3t-value"


def _meta(name: str, uid: str, owner: str = "", **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "shop",
        "uid": uid,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        **extra,
    }
    if owner:
        metadata["ownerReferences"] = [{"uid": owner, "kind": "X", "controller": True}]
    return metadata


def deployment(ready: int = 2, desired: int = 2) -> tuple[str, str, dict[str, Any]]:
    return (
        "apps/v1",
        "Deployment",
        {
            "metadata": _meta(
                "web", "d-1", generation=1, annotations={"note": SECRET}, labels={"a": SECRET}
            ),
            "spec": {
                "replicas": desired,
                "template": {"spec": {"containers": [{"env": [{"name": "K", "value": SECRET}]}]}},
            },
            "status": {
                "observedGeneration": 1,
                "replicas": desired,
                "updatedReplicas": desired,
                "readyReplicas": ready,
                "availableReplicas": ready,
            },
        },
    )


def replicaset() -> tuple[str, str, dict[str, Any]]:
    return (
        "apps/v1",
        "ReplicaSet",
        {
            "metadata": _meta("web-abc", "rs-1", owner="d-1"),
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2},
        },
    )


def pod(name: str, uid: str, *, ready: bool = True, waiting: str = "") -> tuple[str, str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting, "message": SECRET}} if waiting else {}
    return (
        "v1",
        "Pod",
        {
            "metadata": _meta(name, uid, owner="rs-1"),
            "spec": {"containers": [{"name": "c", "env": [{"name": "K", "value": SECRET}]}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "c",
                        "ready": ready,
                        "restartCount": 3 if waiting else 0,
                        "state": state,
                    }
                ],
            },
        },
    )


def secret() -> tuple[str, str, dict[str, Any]]:
    return (
        "v1",
        "Secret",
        {"metadata": _meta("creds", "s-1"), "data": {"password": SECRET}, "stringData": SECRET},
    )


def service() -> tuple[str, str, dict[str, Any]]:
    return ("v1", "Service", {"metadata": _meta("web", "svc-1"), "spec": {"ports": []}})


def world() -> list[tuple[str, str, dict[str, Any]]]:
    # Listed leaves first, as a cluster might answer: the event puts owners first anyway.
    return [
        pod("web-abc-2", "p-2"),
        pod("web-abc-1", "p-1"),
        replicaset(),
        deployment(),
        service(),
        secret(),
    ]


def test_nesting_puts_pods_under_their_replicaset_under_their_deployment() -> None:
    event = observe("web", world())
    assert [r.kind for r in event.resources] == [
        "Deployment",
        "Secret",
        "Service",
        "ReplicaSet",
        "Pod",
        "Pod",
    ]
    forest = nest(event.resources)
    assert [(n.resource.kind, n.resource.name) for n in forest] == [
        ("Deployment", "web"),
        ("Secret", "creds"),
        ("Service", "web"),
    ]
    [rs] = forest[0].children
    assert rs.resource.name == "web-abc" and rs.resource.owners == ("d-1",)
    assert [p.resource.name for p in rs.children] == ["web-abc-1", "web-abc-2"]
    assert forest[1].children == [] and forest[2].children == []


def test_health_of_each_kind_with_its_reason() -> None:
    by_name = {r.name: r for r in observe("web", world()).resources if r.kind != "Service"}
    assert (by_name["web"].health, by_name["web"].reason) == (ResourceHealth.HEALTHY, "2/2 ready")
    assert by_name["web-abc"].health == ResourceHealth.HEALTHY
    assert by_name["web-abc-1"].reason == "Running, 1/1 ready"
    assert by_name["creds"].health == ResourceHealth.HEALTHY
    [_, _, half] = deployment(ready=1, desired=3)
    assert health_of({**half, "kind": "Deployment"}) == (ResourceHealth.PROGRESSING, "1/3 ready")
    [_, _, crashing] = pod("p", "p-9", ready=False, waiting="CrashLoopBackOff")
    assert health_of({**crashing, "kind": "Pod"}) == (
        ResourceHealth.UNHEALTHY,
        "Running, 0/1 ready, 3 restarts, CrashLoopBackOff",
    )
    [_, _, starting] = pod("p", "p-8", ready=False)
    assert health_of({**starting, "kind": "Pod"})[0] == ResourceHealth.PROGRESSING
    assert health_of({"kind": "Pod", "status": {"containerStatuses": 7}}) == (
        ResourceHealth.UNKNOWN,
        "unreadable status",
    )


def test_secret_data_annotations_labels_and_env_values_are_never_recorded() -> None:
    event = observe("web", [*world(), pod("bad", "p-3", ready=False, waiting="ImagePullBackOff")])
    encoded = default_registry().encode(event)[2]
    assert SECRET.encode() not in encoded
    assert b"ImagePullBackOff" in encoded  # the waiting reason is kept, its message not


def test_the_cap_keeps_owners_and_counts_what_it_left_out() -> None:
    pods = [pod(f"web-abc-{i:03}", f"p-{i}") for i in range(20)]
    event = observe("web", [*pods, replicaset(), deployment(), service()], max_objects=10)
    assert len(event.resources) == 10 and event.truncated == 13
    kinds = [r.kind for r in event.resources]
    assert kinds[:3] == ["Deployment", "Service", "ReplicaSet"] and set(kinds[3:]) == {"Pod"}


def test_hostile_sizes_stay_under_the_event_cap() -> None:
    """A thousand objects with megabyte names: clipped per field and cut by the byte budget."""
    huge = "x" * 1_000_000
    long_uid = huge[:300]
    objects = [
        (
            "v1",
            "ConfigMap",
            {"metadata": {"name": huge, "namespace": huge, "uid": f"{i:04}{long_uid}"}},
        )
        for i in range(1000)
    ]
    event = observe("web", objects)
    assert 0 < len(event.resources) < 1000 and event.truncated == 1000 - len(event.resources)
    assert all(len(r.name) <= 253 for r in event.resources)
    assert len(default_registry().encode(event)[2]) < DEFAULT_MAX_EVENT_BYTES
    budgeted = observe("web", objects, max_bytes=10_000)
    assert 0 < len(budgeted.resources) < 30 and budgeted.truncated == 1000 - len(budgeted.resources)


def test_the_digest_changes_with_health_and_not_with_listing_order() -> None:
    first = observe("web", world())
    assert observe("web", list(reversed(world()))).digest == first.digest
    assert not changed(first.digest, observe("web", world()))
    assert changed(None, first)
    unready = [*world()[1:], pod("web-abc-2", "p-2", ready=False)]
    assert changed(first.digest, observe("web", unready))


def test_an_owner_cycle_does_not_hang_the_nesting() -> None:
    a = LiveResource(
        api_version="v1", kind="A", name="a", uid="1", owners=("2",), health=ResourceHealth.HEALTHY
    )
    b = LiveResource(
        api_version="v1", kind="B", name="b", uid="2", owners=("1",), health=ResourceHealth.HEALTHY
    )
    forest = nest([a, b])
    assert sum(1 + len(n.children) for n in forest) == 2
    assert observe("web", [("v1", "A", {"metadata": {"uid": "1"}})]).resources


async def test_recorded_once_and_again_when_it_changes() -> None:
    store = InMemoryStore()
    assert await record_live_resources(store, "web", world(), actor="drift") is not None
    assert await record_live_resources(store, "web", world(), actor="drift") is None
    unready = [*world()[1:], pod("web-abc-2", "p-2", ready=False)]
    again = await record_live_resources(store, "web", unready, actor="drift")
    assert again is not None and again.truncated == 0
    recorded = await store.read_stream("liveresources-web")
    assert [r.stream_version for r in recorded] == [0, 1]


def test_each_object_says_its_provider_and_namesakes_on_two_clusters_both_stay() -> None:
    # resourceRoutes: the Service on a, the Deployment and what it made on b; a namesake
    # Service on b (an older route left it) is another object.
    on_b = [deployment(), replicaset(), pod("web-abc-1", "p-1"), service()]
    event = observe("web", {"a": [service()], "b": on_b})
    placed = sorted((r.provider, r.kind) for r in event.resources)
    assert placed == [
        ("a", "Service"),
        ("b", "Deployment"),
        ("b", "Pod"),
        ("b", "ReplicaSet"),
        ("b", "Service"),
    ]
    [deployment_node] = [n for n in nest(event.resources) if n.resource.kind == "Deployment"]
    assert [c.resource.kind for c in deployment_node.children] == ["ReplicaSet"]
    assert shows_providers(event.resources)
    assert not shows_providers(observe("web", {"a": world()}).resources)
    assert {r.provider for r in observe("web", world()).resources} == {""}
    moved = observe("web", {"b": [service()], "a": on_b[:3]})
    assert changed(event.digest, moved)


def test_an_event_recorded_before_providers_still_decodes() -> None:
    old = b'{"api_version":"v1","kind":"Service","name":"web","uid":"s-1","health":"HEALTHY"}'
    assert msgspec.json.decode(old, type=LiveResource).provider == ""


def _answer(event: ApplicationLiveResourcesObserved) -> dict[str, Any]:
    return {
        "application_id": "web",
        "observed_at": "2026-01-01T00:00:00Z",
        "resources": msgspec.to_builtins(event.resources),
        "truncated": event.truncated,
    }


def test_the_cli_names_providers_only_when_the_app_spans_several(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_live_tree(_answer(observe("web", {"a": world()})))
    one = capsys.readouterr().out
    assert "  Service shop/web  HEALTHY" in one and "a:" not in one
    print_live_tree(_answer(observe("web", {"a": [service()], "b": world()[:4]})))
    lines = capsys.readouterr().out.splitlines()
    assert "  Service a:shop/web  HEALTHY" in lines, lines
    deployment_line = next(i for i, line in enumerate(lines) if "Deployment" in line)
    assert lines[deployment_line].startswith("  Deployment b:shop/web  "), lines
    assert lines[deployment_line + 1].startswith("    ReplicaSet b:shop/web-"), lines
