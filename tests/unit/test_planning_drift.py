"""Drift detection's rules, pure: live-only keys, empties, numbers, ignores and Secret masking."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config.manifests import Manifest
from shared.planning.drift import detect_drift, detect_drift_across, parse_ignore_field


def _m(body: dict[str, Any]) -> Manifest:
    meta = body["metadata"]
    return Manifest(
        api_version=body["apiVersion"],
        kind=body["kind"],
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        body=body,
        source="test",
    )


def _deployment(image: str = "ghcr.io/acme/web:v1", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", **extra.pop("metadata", {})},
        "spec": {
            "replicas": extra.pop("replicas", 2),
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
    }


def _live(body: dict[str, Any]) -> dict[str, Any]:
    live = {**body, "status": {"readyReplicas": 2}}
    live["metadata"] = {
        **body["metadata"],
        "namespace": "shop",
        "uid": "u1",
        "resourceVersion": "7",
        "labels": {"slipway.dev/application": "a"},
    }
    live["spec"] = {**body["spec"], "revisionHistoryLimit": 10}
    return live


def test_live_only_keys_are_synced() -> None:
    """Status, uid, added labels and server defaults do not count as drift."""
    result = detect_drift([_m(_deployment())], [_m(_live(_deployment()))], namespace="shop")
    assert result.state == "SYNCED"
    assert result.diff == ""


def test_numbers_equal_numeric_strings_and_empty_equals_missing() -> None:
    """`"2"` equals 2 and an empty `env: []` equals no env."""
    head = _deployment(replicas="2")
    head["spec"]["template"]["spec"]["containers"][0]["env"] = []
    result = detect_drift([_m(head)], [_m(_live(_deployment()))], namespace="shop")
    assert result.state == "SYNCED"


def test_image_edit_is_out_of_sync_with_the_image_in_the_summary() -> None:
    """A changed image is drift, summarised as a sync would change it."""
    live = _live(_deployment("ghcr.io/acme/web:hacked"))
    result = detect_drift([_m(_deployment())], [_m(live)], namespace="shop")
    assert result.state == "OUT_OF_SYNC"
    assert "image web: hacked → v1" in result.summary
    assert "containers.0.image" in result.diff


def test_ignore_fields_and_annotation_suppress_drift() -> None:
    """An ignoreFields entry hides one field; the annotation hides the whole resource."""
    live = [_m(_live(_deployment(replicas=5)))]
    ignore = ["apps/v1:Deployment:shop:web#spec.replicas"]
    assert detect_drift([_m(_deployment())], live, namespace="shop").state == "OUT_OF_SYNC"
    assert detect_drift(
        [_m(_deployment())], live, namespace="shop", ignore_fields=ignore
    ).state == ("SYNCED")
    annotated = _deployment(metadata={"annotations": {"pipecd.dev/ignore-drift-detection": "true"}})
    assert detect_drift([_m(annotated)], live, namespace="shop").state == "SYNCED"


def test_missing_and_extra_resources_are_drift() -> None:
    """A head manifest not running, or a labelled object the head lacks, is out of sync."""
    assert detect_drift([_m(_deployment())], [], namespace="shop").summary == "+1 resource"
    assert detect_drift([], [_m(_live(_deployment()))]).summary == "-1 resource"


def test_a_diff_over_several_clusters_says_which_provider_each_difference_is_on() -> None:
    """The same Deployment on two clusters: edited on one, gone from the other; each entry of
    the diff names its provider, numbered on across them. One cluster keeps the plain layout."""
    head = [_m(_deployment())]
    edited = [_m(_live(_deployment("ghcr.io/acme/web:hacked")))]
    result = detect_drift_across(
        [("east", head, edited), ("quiet", head, [_m(_live(_deployment()))]), ("west", head, [])],
        namespace="shop",
    )
    assert result.state == "OUT_OF_SYNC"
    lines = [line for line in result.diff.splitlines() if line.startswith(("#", "+", "-"))]
    assert lines == ["# 1. Deployment shop/web on east", "+ 2. Deployment shop/web on west (added)"]
    assert "containers.0.image" in result.diff
    alone = detect_drift_across([("east", head, edited)], namespace="shop")
    assert alone.diff.startswith("# 1. Deployment shop/web\n"), alone.diff


def test_secret_values_are_masked() -> None:
    """A Secret's stringData compares with live data, and its values never show."""
    head = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"password": "hunter2"},
    }
    live = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "shop"},
        "data": {"password": "b3RoZXI="},
    }
    result = detect_drift([_m(head)], [_m(live)], namespace="shop")
    assert result.state == "OUT_OF_SYNC"
    assert "hunter2" not in result.diff and "b3RoZXI=" not in result.diff
    assert "***" in result.diff


def test_parse_ignore_field_rejects_malformed_entries() -> None:
    """Entries must name apiVersion:kind:namespace:name#path; list indexes become ints."""
    assert parse_ignore_field("apps/v1:Deployment:default:web#spec.a.0") == (
        ("apps/v1", "Deployment", "", "web"),
        ("spec", "a", 0),
    )
    with pytest.raises(ValueError, match="expected"):
        parse_ignore_field("Deployment:web#spec")


def test_annotation_on_the_live_object_alone_suppresses_drift() -> None:
    """`kubectl annotate` of the live object is enough to take it out of the check."""
    live = _live(_deployment(replicas=5))
    live["metadata"]["annotations"] = {"pipecd.dev/ignore-drift-detection": "true"}
    assert detect_drift([_m(_deployment())], [_m(live)], namespace="shop").state == "SYNCED"
