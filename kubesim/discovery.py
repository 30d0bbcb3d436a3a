"""Discovery and OpenAPI: how clients learn which kinds the server serves.

- `/version`, `/api` (APIVersions), `/apis` (APIGroupList), `/apis/<group>`
  (APIGroup), `/api/v1` and `/apis/<group>/<version>` (APIResourceList with
  verbs, scope, kind, short names, categories and the `status`/`scale`
  subresources). Clients that ask for aggregated discovery
  (`as=APIGroupDiscoveryList`) get the legacy documents with a plain
  `application/json` type, from which client-go falls back by design.
- `/openapi/v3` and `/openapi/v3/<group-version>`: a minimal OpenAPI 3
  document per group-version listing, for every kind, a PATCH operation with
  its `x-kubernetes-group-version-kind` and the `fieldValidation` query
  parameter. That is what kubectl looks for to decide the server validates
  fields itself, so a plain `kubectl apply -f` works without `--validate=false`.
  Schemas are not served, so kubectl builds strategic merge patches from its
  compiled-in types, as it does for servers without OpenAPI. `/openapi/v2`,
  which older kubectl reads instead, is in `openapi_v2`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubesim.resources import Registry, ResourceType


def version_info(server_version: str) -> dict[str, str]:
    """The `/version` answer for a server version such as `v1.31`."""
    major, minor = [*server_version.lstrip("v").split("."), "0"][:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{major}.{minor}.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """The `/api` answer: the core group's only version and where to reach the server."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    """The `/apis` answer: every named group with its versions."""
    groups = [_group(g, vs) for g, vs in sorted(registry.group_versions().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    """The `/apis/{group}` answer, or None for an unknown group (a 404)."""
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """The resource list of one group version, or None when it serves nothing (a 404)."""
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = [
        entry for t in sorted(types, key=lambda t: t.plural) for entry in t.discovery_entries()
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_root(registry: Registry) -> dict[str, Any]:
    """The `/openapi/v3` index: each group version's path with a content hash kubectl caches by."""
    paths = {}
    for group, versions in sorted(registry.group_versions().items()):
        for version in versions:
            path = _gv_path(group, version)
            doc = openapi_v3_group_version(registry, group, version)
            digest = (
                hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            )
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_group_version(registry: Registry, group: str, version: str) -> dict[str, Any]:
    """One group version's OpenAPI v3 document: the PATCH operations kubectl's apply looks for."""
    paths: dict[str, Any] = {}
    for rtype in sorted(registry.in_group_version(group, version), key=lambda t: t.plural):
        paths[_item_path(rtype, group, version)] = {
            "patch": _patch_operation(rtype, group, version)
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubesim)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _item_path(rtype: ResourceType, group: str, version: str) -> str:
    scope = "namespaces/{namespace}/" if rtype.namespaced else ""
    return f"/{_gv_path(group, version)}/{scope}{rtype.plural}/{{name}}"


def _patch_operation(rtype: ResourceType, group: str, version: str) -> dict[str, Any]:
    query = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in ("dryRun", "fieldManager", "fieldValidation", "force")
    ]
    return {
        "operationId": f"patch{rtype.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rtype.kind},
        "parameters": query,
        "responses": {"200": {"description": "OK"}},
    }
