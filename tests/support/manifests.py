"""Manifests as the planner's diff sees them (`M`), and the Deployment and ConfigMap shapes
the planning tests build on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class M:
    """A manifest as the diff sees it, built from one decoded YAML document."""

    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.body.get("metadata", {}).get("namespace", "") or "")


def deployment(
    name: str = "web",
    image: str = "ghcr.io/acme/helloworld:v1",
    replicas: int | None = 2,
    env: list[dict[str, str]] | None = None,
) -> M:
    container: dict[str, Any] = {"name": "app", "image": image}
    if env is not None:
        container["env"] = env
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [container]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return M(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}
    )


def configmap(name: str = "app-config", **data: str) -> M:
    return M({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
