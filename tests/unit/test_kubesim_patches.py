"""The pure parts of kubesim: patches, server-side apply, selectors and image rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubesim.apply import field_paths, server_side_apply, to_fields_v1
from kubesim.errors import ApiError
from kubesim.patches import json_patch, merge_patch, strategic_merge
from kubesim.rules import ImageRule, ImageRules, load_rules_file
from kubesim.selectors import labels_match, parse_field_selector, parse_label_selector

POD_SPEC = {
    "containers": [
        {
            "name": "app",
            "image": "app:v1",
            "ports": [{"containerPort": 8080}, {"containerPort": 9090}],
            "env": [{"name": "A", "value": "1"}],
        },
        {"name": "sidecar", "image": "proxy:v1"},
    ],
}


def test_merge_patch_follows_rfc_7386() -> None:
    """Maps merge, null deletes, lists and scalars replace."""
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "list": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # the input is untouched


def test_strategic_merge_merges_containers_by_name_and_ports_by_container_port() -> None:
    """A strategic patch changes one container's image and adds a port without losing the rest."""
    patch = {
        "containers": [
            {"name": "app", "image": "app:v2", "ports": [{"containerPort": 7070}]},
        ]
    }
    merged = strategic_merge(POD_SPEC, patch)
    app, sidecar = merged["containers"]
    assert app["image"] == "app:v2"
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090, 7070]
    assert app["env"] == [{"name": "A", "value": "1"}]
    assert sidecar == {"name": "sidecar", "image": "proxy:v1"}


def test_strategic_merge_directives_kubectl_sends() -> None:
    """$patch delete/replace, $setElementOrder, $retainKeys and $deleteFromPrimitiveList work."""
    deleted = strategic_merge(POD_SPEC, {"containers": [{"name": "sidecar", "$patch": "delete"}]})
    assert [c["name"] for c in deleted["containers"]] == ["app"]
    ordered = strategic_merge(
        POD_SPEC,
        {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]},
    )
    assert [c["name"] for c in ordered["containers"]] == ["sidecar", "app"]
    strategy = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}
    recreate = strategic_merge(
        strategy, {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}
    )
    assert recreate == {"strategy": {"type": "Recreate"}}
    replaced = strategic_merge(
        {"selector": {"a": "1", "b": "2"}}, {"selector": {"$patch": "replace", "c": "3"}}
    )
    assert replaced == {"selector": {"c": "3"}}
    finalizers = {"metadata": {"finalizers": ["a", "b"]}}
    trimmed = strategic_merge(
        finalizers, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    )
    assert trimmed == {"metadata": {"finalizers": ["b"]}}
    added = strategic_merge(finalizers, {"metadata": {"finalizers": ["c"]}})
    assert added == {"metadata": {"finalizers": ["a", "b", "c"]}}


def test_strategic_merge_service_ports_merge_by_port() -> None:
    """Service ports merge by `port`; other lists (args) are replaced."""
    service = {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "args": ["-a"]}
    merged = strategic_merge(service, {"ports": [{"port": 80, "targetPort": 9090}], "args": ["-b"]})
    assert merged == {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}], "args": ["-b"]}


def test_json_patch_operations_and_failed_test() -> None:
    """RFC 6902 add/remove/replace/move/copy/test, and a failing test is a 422."""
    doc = {"a": {"b": 1}, "list": [1, 2]}
    ops = [
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "replace", "path": "/a/b", "value": 2},
        {"op": "copy", "from": "/a", "path": "/c"},
        {"op": "move", "from": "/c/b", "path": "/d"},
        {"op": "remove", "path": "/list/0"},
        {"op": "test", "path": "/d", "value": 2},
        {"op": "add", "path": "/a~1b", "value": "slash"},
    ]
    assert json_patch(doc, ops) == {"a": {"b": 2}, "list": [2, 3], "c": {}, "d": 2, "a/b": "slash"}
    with pytest.raises(ApiError) as failed:
        json_patch(doc, [{"op": "test", "path": "/a/b", "value": 99}])
    assert failed.value.code == 422


def test_field_paths_use_the_fields_v1_encoding() -> None:
    """Keyed list elements are `k:{…}`, set elements `v:…`, and identity fields are not owned."""
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "x"}, "finalizers": ["f"]},
        "spec": {"containers": [{"name": "app", "image": "i"}]},
    }
    fields = to_fields_v1(field_paths(obj))
    assert fields == {
        "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {'v:"f"': {}}},
        "f:spec": {"f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}},
    }


def test_server_side_apply_prunes_only_fields_its_manager_dropped() -> None:
    """Re-applying without a field removes it, unless another manager also set it."""
    first = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "1", "b": "2"},
    }
    live = server_side_apply(None, first, "deployer")
    live["metadata"]["managedFields"].append(
        {"manager": "other", "operation": "Update", "fieldsV1": {"f:data": {"f:b": {}}}}
    )
    second = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"c": "3"},
    }
    result = server_side_apply(live, second, "deployer")
    assert result["data"] == {"b": "2", "c": "3"}


def test_label_selector_syntax() -> None:
    """Every operator parses; a missing label satisfies != and notin, as in Kubernetes."""
    labels = {"app": "web", "tier": "front"}
    cases = {
        "app=web": True,
        "app==web": True,
        "app!=web": False,
        "app in (web, api)": True,
        "app notin (web)": False,
        "tier": True,
        "!tier": False,
        "missing!=x": True,
        "missing notin (x)": True,
        "app=web,tier in (back)": False,
    }
    for text, expected in cases.items():
        assert labels_match(parse_label_selector(text), labels) is expected, text
    with pytest.raises(ApiError):
        parse_label_selector("app in web")


def test_field_selector_on_any_dotted_path() -> None:
    """Field selectors compare dotted paths with =, == and !=."""
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}}
    assert parse_field_selector("metadata.name=p,status.phase==Running")(pod)
    assert not parse_field_selector("metadata.namespace!=ns")(pod)


def test_image_rules_first_match_and_file(tmp_path: Path) -> None:
    """The first matching glob wins; the YAML file and the CLI syntax give the same rule."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "ready_delay_s: 0.5\n"
        "images:\n"
        "  - {image: 'ghcr.io/acme/web:v2*', error_rate: 0.3, latency_ms: 250}\n"
        "  - {image: '*:broken', never_ready: true}\n"
    )
    delay, rules = load_rules_file(path)
    table = ImageRules(rules, ready_delay_s=delay or 1.0)
    assert table.for_image("ghcr.io/acme/web:v2.1").error_rate == 0.3
    assert table.for_image("x:broken").never_ready
    assert table.for_image("other:v1") == ImageRule()
    assert table.ready_delay(table.for_image("other:v1")) == 0.5
    assert ImageRule.parse("ghcr.io/acme/web:v2* error_rate=0.3,latency_ms=250") == rules[0]
    with pytest.raises(ValueError, match="unknown keys"):
        ImageRule.from_mapping({"image": "*", "eror_rate": 1})
