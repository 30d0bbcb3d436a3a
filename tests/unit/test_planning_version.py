"""The version a plan names, from the images of its Deployments (PipeCD's determineVersion)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config.manifests import Manifest
from shared.planning import TriggerInfo, make_plan
from shared.planning.spec import PlanningSpec
from shared.planning.version import determine_version


def workload(kind: str, *images: str, name: str = "web") -> Manifest:
    body: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"image": i} for i in images]}}}
    }
    return Manifest(api_version="apps/v1", kind=kind, name=name, namespace="", body=body)


@pytest.mark.parametrize(
    ("manifests", "version"),
    [
        ([workload("Deployment", "ghcr.io/acme/web:v1.2.0")], "v1.2.0"),
        (
            [workload("Deployment", "ghcr.io/acme/web:v2", "envoyproxy/envoy:1.30")],
            "v2 (web), 1.30 (envoy)",
        ),
        (
            [workload("Deployment", "web:v2"), workload("Deployment", "worker:w5", name="wk")],
            "v2 (web), w5 (worker)",
        ),
        ([workload("StatefulSet", "db:15")], "unknown"),  # PipeCD reads Deployments only
        ([], "unknown"),
        ([workload("Deployment", "registry:5000/web:v1")], ""),  # PipeCD's parsing, kept
    ],
)
def test_version_is_pipecds(manifests: list[Manifest], version: str) -> None:
    assert determine_version(manifests) == version


def test_a_plan_names_the_version_it_deploys() -> None:
    plan = make_plan(PlanningSpec(), TriggerInfo(), [workload("Deployment", "web:v3")])
    assert plan.version == "v3"
