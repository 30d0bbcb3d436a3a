"""Taking over PipeCD's objects, the pure half: which objects, which commit, which patch."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.decider import AdoptApplication, InvalidCommand, decide
from shared.applications import Application
from shared.events.catalog import ApplicationAdopted
from shared.platform.adoption import (
    AdoptionRefused,
    pipecd_objects,
    running_commit,
    takeover_patch,
)


def _obj(app: str, commit: str = "", managed_by: str = "piped", **meta: Any) -> dict[str, Any]:
    annotations = {"pipecd.dev/managed-by": managed_by, "pipecd.dev/application": app}
    if commit:
        annotations["pipecd.dev/commit-hash"] = commit
    return {"metadata": {"name": "web", "annotations": annotations, **meta}}


def test_only_pipeds_objects_of_that_application_are_picked() -> None:
    mine, other, hand_made = _obj("a1"), _obj("a2"), _obj("a1", managed_by="helm")
    assert pipecd_objects([mine, other, hand_made, {"metadata": {}}], "a1") == [mine]


def test_the_running_commit_is_the_one_hash_given_or_a_clear_refusal() -> None:
    assert running_commit([_obj("a", "abc1234"), _obj("a", "abc1234")]) == "abc1234"
    assert running_commit([_obj("a", "abc1234")], "fed9876") == "fed9876"
    with pytest.raises(AdoptionRefused, match=r"abc1234 \(1 objects\), fed9876 \(1 objects\)"):
        running_commit([_obj("a", "abc1234"), _obj("a", "fed9876")])
    with pytest.raises(AdoptionRefused, match="--running-commit"):
        running_commit([_obj("a")])


def test_the_patch_moves_client_side_fields_to_the_apply_entry_and_labels() -> None:
    """kubectl-client-side-apply's fields join Slipway's Apply entry (its entry goes), other
    managers keep theirs, and the label is added; the resourceVersion is tested first."""
    csa: dict[str, Any] = {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}
    hpa: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    obj = _obj(
        "a1",
        resourceVersion="42",
        labels={"app": "web"},
        managedFields=[
            {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": csa},
            {"manager": "hpa-controller", "operation": "Update", "fieldsV1": hpa},
        ],
    )
    patch = takeover_patch(
        obj, application_id="01app", manager="slipway", api_version="v1", time="t"
    )
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "42"}
    entries = patch[1]["value"]
    assert [(e["manager"], e["operation"]) for e in entries] == [
        ("hpa-controller", "Update"),
        ("slipway", "Apply"),
    ]
    assert entries[1]["fieldsV1"] == {
        "f:data": {"f:a": {}},
        "f:metadata": {"f:labels": {"f:app": {}, "f:slipway.dev/application": {}}},
    }
    assert patch[2] == {
        "op": "add",
        "path": "/metadata/labels/slipway.dev~1application",
        "value": "01app",
    }


def test_the_api_decider_records_an_adoption_of_a_registered_application() -> None:
    app = Application(
        application_id="01app",
        name="web",
        repository_id="config",
        path="web",
        config_filename="x",
        platform_provider="",
        labels=(),
        disabled=False,
    )
    command = AdoptApplication(
        application_id="01app", running_commit_hash="abc1234", resources=("b", "a")
    )
    assert decide(app, command) == [
        ApplicationAdopted(
            application_id="01app", running_commit_hash="abc1234", resources=("a", "b")
        )
    ]
    with pytest.raises(InvalidCommand, match="running_commit_hash"):
        decide(app, AdoptApplication(application_id="01app", running_commit_hash="main"))
