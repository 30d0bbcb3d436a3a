"""`LiveKinds` (PipeCD's appStateInformer matcher over every served kind) and `controlled`."""

from __future__ import annotations

from shared.platform.livekinds import LiveKinds, controlled


def test_every_kind_matches_by_default_but_controller_copies() -> None:
    kinds = LiveKinds()
    assert kinds.matches("policy/v1", "PodDisruptionBudget")
    assert kinds.matches("example.com/v1", "Widget")
    assert not kinds.matches("v1", "Endpoints")
    assert not kinds.matches("v1", "Event")


def test_exclusion_wins_over_inclusion_and_a_bare_api_version_matches_its_kinds() -> None:
    kinds = LiveKinds.of(
        include=[("v1", "Endpoints"), ("v1", "Secret")],
        exclude=[("v1", "Secret"), ("rbac.authorization.k8s.io/v1", "")],
    )
    assert kinds.matches("v1", "Endpoints")
    assert not kinds.matches("v1", "Secret")
    assert not kinds.matches("rbac.authorization.k8s.io/v1", "Role")
    assert kinds.matches("v1", "ConfigMap")


def test_objects_a_controller_owns_are_its_own() -> None:
    owned = {"metadata": {"ownerReferences": [{"kind": "Deployment", "controller": True}]}}
    referenced = {"metadata": {"ownerReferences": [{"kind": "ConfigMap"}]}}
    assert controlled(owned)
    assert not controlled(referenced)
    assert not controlled({"metadata": {}})
