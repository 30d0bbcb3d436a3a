"""The manifest diff: pairing by key, PipeCD's equalities, field paths and the one-line summary."""

from __future__ import annotations

import yaml

from shared.planning.diff import (
    MISSING,
    ManifestLike,
    ResourceKey,
    diff_manifests,
    diff_objects,
    format_path,
    image_name_and_version,
)
from tests.support.manifests import M, configmap, deployment


def docs(text: str) -> list[ManifestLike]:
    return [M(d) for d in yaml.safe_load_all(text) if d]


def service(name: str = "web") -> M:
    return M(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        }
    )


def test_image_bump_is_one_field_and_summarised_by_image_name() -> None:
    """A new image tag is one changed field, summarised as `image <basename>: old → new`."""
    diff = diff_manifests(
        [deployment(), service()], [deployment(image="ghcr.io/acme/helloworld:v2"), service()]
    )
    assert [str(c.key) for c in diff.changed] == ["Deployment web"]
    [change] = diff.changed[0].fields
    assert change.path_str == "spec.template.spec.containers.0.image"
    assert (change.old, change.new) == ("ghcr.io/acme/helloworld:v1", "ghcr.io/acme/helloworld:v2")
    assert diff.summary == "image helloworld: v1 → v2"


def test_replicas_only_is_summarised_as_a_scale() -> None:
    """Only `spec.replicas` changed: the summary says `replicas <name>: 2 → 5`."""
    diff = diff_manifests([deployment(replicas=2)], [deployment(replicas=5)])
    assert [f.path_str for f in diff.changed[0].fields] == ["spec.replicas"]
    assert diff.summary == "replicas web: 2 → 5"


def test_scale_to_zero_is_a_change() -> None:
    """`replicas: 0` is a value, not "empty": scaling to zero shows (not so in PipeCD)."""
    diff = diff_manifests([deployment(replicas=3)], [deployment(replicas=0)])
    assert diff.summary == "replicas web: 3 → 0"


def test_configmap_change_is_named() -> None:
    """A changed ConfigMap shows its changed keys and `configmap <name> changed`."""
    diff = diff_manifests([configmap(LEVEL="info")], [configmap(LEVEL="debug")])
    assert [(f.path_str, f.old, f.new) for f in diff.changed[0].fields] == [
        ("data.LEVEL", "info", "debug")
    ]
    assert diff.summary == "configmap app-config changed"


def test_added_and_removed_resources_are_counted() -> None:
    """Resources only in the new set are added, only in the old removed; the summary counts them."""
    diff = diff_manifests(
        [deployment(), service("old-svc")],
        [deployment(), service("a"), configmap("b")],
    )
    assert [str(k) for k, _ in diff.added] == ["ConfigMap b", "Service a"]
    assert [str(k) for k, _ in diff.removed] == ["Service old-svc"]
    assert diff.summary == "+2 resources, -1 resource"


def test_multi_document_yaml_pairs_each_document_by_key() -> None:
    """Documents of a multi-document file are paired by kind and name, whatever their order."""
    old = docs(
        """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    spec:
      containers: [{name: app, image: "reg.example.com:5000/team/helloworld:v1"}]
---
"""
    )
    new = docs(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  template:
    spec:
      containers: [{name: app, image: "reg.example.com:5000/team/helloworld:v2"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
"""
    )
    diff = diff_manifests(old, new)
    assert not diff.added and not diff.removed
    assert diff.summary == "image helloworld: v1 → v2"


def test_no_change() -> None:
    """Identical sets: no change, summary `no changes`, rendered as PipeCD's sentence."""
    diff = diff_manifests([deployment(), service()], [service(), deployment()])
    assert diff.no_change
    assert diff.summary == "no changes"
    assert diff.render() == "No changes were detected\n"


def test_null_missing_and_empty_are_equal() -> None:
    """`null`, a missing key, `""`, `[]` and `{}` compare equal, as with PipeCD's equateEmpty."""
    assert not diff_manifests([deployment(env=None)], [deployment(env=[])]).changed
    old = {"metadata": {"labels": None, "annotations": {}}, "spec": {"a": ""}}
    assert diff_objects(old, {"metadata": {}}) == []


def test_numbers_equal_numeric_strings_and_quantities_compare_by_amount() -> None:
    """`"2"` equals 2, `2.0` equals 2, and `1Gi` equals `1024Mi` under resources."""
    assert diff_objects({"a": 2, "b": 2.0}, {"a": "2", "b": 2}) == []
    resources = ("spec", "resources", "limits")
    old = {"spec": {"resources": {"limits": {"memory": "1Gi", "cpu": "500m"}}}}
    new = {"spec": {"resources": {"limits": {"memory": "1024Mi", "cpu": 0.5}}}}
    assert diff_objects(old, new) == []
    [change] = diff_objects(old, {"spec": {"resources": {"limits": {"memory": "2Gi", "cpu": 0.5}}}})
    assert change.path == (*resources, "memory")


def test_list_items_added_or_removed_are_one_change_each() -> None:
    """Lists compare index by index; an extra item is one change holding the whole item."""
    changes = diff_objects({"ports": [{"port": 80}]}, {"ports": [{"port": 80}, {"port": 443}]})
    assert [(c.path_str, c.old, c.new) for c in changes] == [("ports.1", MISSING, {"port": 443})]


def test_secret_values_are_masked_and_string_data_is_folded() -> None:
    """Secret values never appear in a change; `stringData` equals the same value in `data`."""

    def secret(**fields: dict[str, str]) -> M:
        return M({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **fields})

    old = secret(data={"pw": "aGk="})
    assert diff_manifests([old], [secret(stringData={"pw": "hi"})]).no_change
    other = secret(data={"pw": "c2VjcmV0"})
    diff = diff_manifests([old], [other])
    [change] = diff.changed[0].fields
    assert (change.old, change.new) == ("*****", "*****")
    assert "c2VjcmV0" not in diff.render() and "c2VjcmV0" not in str(diff.to_dict())
    assert diff.summary == "secret s changed"


def test_api_version_change_within_a_group_is_a_change_not_a_replacement() -> None:
    """`apps/v1beta2` → `apps/v1` pairs as the same resource."""
    old = M({"apiVersion": "apps/v1beta2", "kind": "Deployment", "metadata": {"name": "web"}})
    new = M({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}})
    diff = diff_manifests([old], [new])
    assert not diff.added and not diff.removed
    assert [(f.path_str, f.old, f.new) for f in diff.changed[0].fields] == [
        ("apiVersion", "apps/v1beta2", "apps/v1")
    ]


def test_render_lists_removed_added_and_changed_with_old_and_new_values() -> None:
    """The readable diff numbers each resource and shows `path: old → new` for each field."""
    diff = diff_manifests(
        [deployment(), service("gone")],
        [deployment(image="ghcr.io/acme/helloworld:v2", replicas=3), configmap("new")],
    )
    text = diff.render()
    assert "- 1. Service gone (removed)" in text
    assert "+ 2. ConfigMap new (added)" in text
    assert "# 3. Deployment web" in text
    assert "~ spec.replicas: 2 → 3" in text
    assert (
        "~ spec.template.spec.containers.0.image: ghcr.io/acme/helloworld:v1 → "
        "ghcr.io/acme/helloworld:v2" in text
    )
    assert diff.summary == (
        "replicas web: 2 → 3, image helloworld: v1 → v2, +1 resource, -1 resource"
    )


def test_other_workload_changes_are_named_by_kind() -> None:
    """A pod-template change that is not an image is summarised as `deployment <name> changed`."""
    diff = diff_manifests(
        [deployment(env=[{"name": "A", "value": "1"}])],
        [deployment(env=[{"name": "A", "value": "2"}])],
    )
    assert diff.summary == "deployment web changed"
    assert diff.changed[0].fields[0].path_str == "spec.template.spec.containers.0.env.0.value"


def test_paths_quote_keys_with_dots_and_images_parse_like_pipecd() -> None:
    """Dotted keys are quoted in paths; image names are the repository basename."""
    assert format_path(("metadata", "labels", "app.kubernetes.io/name")) == (
        'metadata.labels["app.kubernetes.io/name"]'
    )
    assert image_name_and_version("gcr.io/p/helloworld:v0.1") == ("helloworld", "v0.1")
    assert image_name_and_version("localhost:5000/helloworld") == ("helloworld", "latest")
    assert image_name_and_version("nginx@sha256:0123456789abcdef0123") == ("nginx", "0123456789ab")


def test_json_form_has_every_resource_and_field() -> None:
    """`to_dict` carries the summary, resources and fields with JSON-ready values."""
    diff = diff_manifests([deployment()], [deployment(replicas=4), service()])
    data = diff.to_dict()
    assert data["summary"] == "replicas web: 2 → 4, +1 resource"
    assert data["added"] == [
        {"api_version": "v1", "kind": "Service", "namespace": "", "name": "web"}
    ]
    assert data["changed"][0]["fields"] == [{"path": "spec.replicas", "old": 2, "new": 4}]
    assert ResourceKey("apps", "Deployment", "", "web") == diff.changed[0].key
