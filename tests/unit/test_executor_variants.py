"""Variant manifests: `<name>-canary` copies, replicas N or N%, configs, services, patches."""

from __future__ import annotations

import json

import pytest
import yaml

from services.executor.variants import VariantError, apply_patches, variant_manifests
from shared.config.application import (
    K8sResourcePatch,
    K8sResourcePatchOp,
    K8sResourcePatchTarget,
    K8sResourceReference,
)
from shared.config.manifests import Manifest
from shared.config.types import Replicas
from shared.executor.options import OptionsError, stage_options

DOCS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 10
  selector: {matchLabels: {app: web, pipecd.dev/variant: primary}}
  template:
    metadata: {labels: {app: web, pipecd.dev/variant: primary}}
    spec:
      volumes:
        - {name: conf, configMap: {name: web-config}}
        - {name: other, configMap: {name: not-ours}}
      containers:
        - name: web
          image: web:v2
          envFrom: [{secretRef: {name: web-secret}}]
          env: [{name: A, valueFrom: {configMapKeyRef: {name: web-config, key: a}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {a: "1", conf.yaml: "level: info\\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret}
stringData: {token: x}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  clusterIP: 10.0.0.1
  selector: {app: web}
  ports: [{port: 80, nodePort: 30080}]
"""


def manifests() -> list[Manifest]:
    out = []
    for doc in yaml.safe_load_all(DOCS):
        out.append(
            Manifest(
                api_version=doc["apiVersion"],
                kind=doc["kind"],
                name=doc["metadata"]["name"],
                namespace="",
                body=doc,
            )
        )
    return out


def by_name(items: list[Manifest]) -> dict[str, Manifest]:
    """Workloads and configs by name; Services as `svc/<name>` (they share the app's name)."""
    return {f"svc/{m.name}" if m.kind == "Service" else m.name: m for m in items}


def test_canary_copies_workload_with_percentage_of_primary_replicas_rounded_up() -> None:
    """`replicas: 15%` of 10 primary pods is 2 canary pods, selecting only the canary."""
    out = by_name(
        variant_manifests(
            manifests(),
            variant="canary",
            suffix="canary",
            replicas=Replicas(15, is_percentage=True),
        )
    )
    assert set(out) == {"web-canary", "web-config-canary", "web-secret-canary"}
    spec = out["web-canary"].body["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == {"app": "web", "pipecd.dev/variant": "canary"}
    assert spec["template"]["metadata"]["labels"]["pipecd.dev/variant"] == "canary"
    assert out["web-canary"].body["metadata"]["labels"]["pipecd.dev/variant"] == "canary"


def test_canary_copies_point_at_the_copied_configs_only() -> None:
    """The canary mounts the copied ConfigMap/Secret; references to others stay as they are."""
    out = by_name(
        variant_manifests(manifests(), variant="canary", suffix="canary", replicas=Replicas(1))
    )
    pod = out["web-canary"].body["spec"]["template"]["spec"]
    assert [v["configMap"]["name"] for v in pod["volumes"]] == ["web-config-canary", "not-ours"]
    container = pod["containers"][0]
    assert container["envFrom"][0]["secretRef"]["name"] == "web-secret-canary"
    assert container["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "web-config-canary"
    # The primary's manifests are untouched.
    assert manifests()[0].body["spec"]["template"]["spec"]["volumes"][0]["configMap"] == {
        "name": "web-config"
    }


def test_fixed_replicas_and_a_workload_without_replicas() -> None:
    """`replicas: 3` gives 3 pods; a primary without `replicas` gives its canary 1."""
    three = variant_manifests(manifests(), variant="canary", suffix="canary", replicas=Replicas(3))
    assert by_name(three)["web-canary"].body["spec"]["replicas"] == 3
    bare = manifests()
    del bare[0].body["spec"]["replicas"]
    one = variant_manifests(
        bare, variant="canary", suffix="canary", replicas=Replicas(50, is_percentage=True)
    )
    assert by_name(one)["web-canary"].body["spec"]["replicas"] == 1


def test_create_service_makes_a_cluster_ip_service_for_the_variant() -> None:
    """`createService`: `<svc>-canary`, ClusterIP, selecting the variant, without addresses."""
    out = by_name(
        variant_manifests(
            manifests(),
            variant="canary",
            suffix="canary",
            replicas=Replicas(1),
            create_service=True,
        )
    )
    assert out["web-canary"].kind == "Deployment"
    service = out["svc/web-canary"]
    assert service.body["spec"]["type"] == "ClusterIP"
    assert service.body["spec"]["selector"] == {"app": "web", "pipecd.dev/variant": "canary"}
    assert "clusterIP" not in service.body["spec"]
    assert service.body["spec"]["ports"] == [{"port": 80}]


def test_named_workloads_and_missing_ones() -> None:
    """`spec.workloads` picks the workloads; none found is a VariantError."""
    with pytest.raises(VariantError, match="no workload manifests"):
        variant_manifests(
            manifests(),
            variant="canary",
            suffix="canary",
            replicas=Replicas(1),
            workloads=(K8sResourceReference(kind="Deployment", name="api"),),
        )


def test_yaml_replace_patch_on_a_field_and_inside_a_document_root() -> None:
    """Patches replace a field of a manifest, or a field of YAML held in a string field."""
    patches = (
        K8sResourcePatch(
            target=K8sResourcePatchTarget(kind="Deployment", name="web"),
            ops=(
                K8sResourcePatchOp(
                    path="$.spec.template.spec.containers[0].image", value="web:canary"
                ),
            ),
        ),
        K8sResourcePatch(
            target=K8sResourcePatchTarget(
                kind="ConfigMap", name="web-config", document_root="$.data['conf.yaml']"
            ),
            ops=(K8sResourcePatchOp(path="$.level", value="debug"),),
        ),
    )
    out = by_name(apply_patches(manifests(), patches))
    assert out["web"].body["spec"]["template"]["spec"]["containers"][0]["image"] == "web:canary"
    assert yaml.safe_load(out["web-config"].body["data"]["conf.yaml"]) == {"level": "debug"}
    with pytest.raises(VariantError, match="does not exist"):
        apply_patches(
            manifests(),
            (
                K8sResourcePatch(
                    target=K8sResourcePatchTarget(kind="Deployment", name="web"),
                    ops=(K8sResourcePatchOp(path="$.spec.nope", value="x"),),
                ),
            ),
        )


def test_stage_options_decode_from_the_plan() -> None:
    """`options_json` decodes into the config's options type; garbage is an OptionsError."""
    canary = stage_options(
        "K8S_CANARY_ROLLOUT", json.dumps({"replicas": "20%", "createService": True})
    )
    assert (canary.replicas, canary.create_service) == (Replicas(20, is_percentage=True), True)
    assert stage_options("K8S_SYNC", '{"prune":true}').prune is True
    with pytest.raises(OptionsError):
        stage_options("WAIT", '{"duration": 3}')
    with pytest.raises(OptionsError):
        stage_options("SCRIPT_RUN_ROLLBACK", "{}")
