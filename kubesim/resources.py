"""The kinds the emulator serves: built-in, Istio, and any registered at start or by a CRD.

A `ResourceType` is one (group, plural) with every version it is served at;
objects are stored once per type and only their `apiVersion` changes with the
version a request names (no field conversion — the versions we serve share a
schema, as Istio's networking versions do).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One kind of object: its REST name, versions, scope and the subresources it serves."""

    group: str
    versions: tuple[str, ...]  # the first is the preferred and storage version
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # A status subresource means writes to the main resource keep the stored status.
    status_subresource: bool = False
    scale_subresource: bool = False
    # Custom resources accept JSON merge patch but not strategic merge patch.
    custom: bool = False
    extra_subresources: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """The type's identity in the store: `(group, plural)`."""
        return (self.group, self.plural)

    @property
    def singular(self) -> str:
        """The lower-case kind, as discovery's `singularName`."""
        return self.kind.lower()

    @property
    def storage_version(self) -> str:
        """The version objects are stored in: the first one served."""
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        """`group/version` (the bare version in the core group), of `version` or the stored one."""
        v = version or self.storage_version
        return f"{self.group}/{v}" if self.group else v

    @property
    def list_kind(self) -> str:
        """The kind of the type's list objects, e.g. `DeploymentList`."""
        return f"{self.kind}List"

    def discovery_entries(self) -> list[dict[str, Any]]:
        """This type's entries in an APIResourceList (the resource and its subresources)."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
            "storageVersionHash": _short_hash(f"{self.group}/{self.plural}"),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entries = [entry]
        sub_verbs = ["get", "patch", "update"]
        if self.status_subresource:
            entries.append(self._sub("status", self.kind, sub_verbs))
        if self.scale_subresource:
            # The scale client finds the Scale kind's group and version here.
            scale = self._sub("scale", "Scale", sub_verbs)
            scale.update(group="autoscaling", version="v1")
            entries.append(scale)
        for sub in self.extra_subresources:
            if sub == "token":  # POST only; kubectl create token asks for a TokenRequest
                token = self._sub(sub, "TokenRequest", ["create"])
                token.update(group="authentication.k8s.io", version="v1")
                entries.append(token)
            else:
                entries.append(self._sub(sub, self.kind if sub != "log" else "Pod", ["get"]))
        return entries

    def _sub(self, sub: str, kind: str, verbs: list[str]) -> dict[str, Any]:
        return {
            "name": f"{self.plural}/{sub}",
            "singularName": "",
            "namespaced": self.namespaced,
            "kind": kind,
            "verbs": verbs,
        }


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:11]


_WORKLOAD = ("all",)
_ISTIO_VERSIONS = ("v1beta1", "v1alpha3")
_TRAITS = frozenset({"cluster", "workload", "status", "scale"})


def _builtin(
    api_version: str,
    kind: str,
    plural: str,
    short_names: str = "",
    traits: str = "",
    *,
    extra_subresources: tuple[str, ...] = (),
) -> ResourceType:
    """One row of the built-in table. `traits` are words: `cluster` (not namespaced),
    `workload` (in the `all` category), `status` and `scale` (the subresources served)."""
    words = set(traits.split())
    if not words <= _TRAITS:
        raise ValueError(f"{kind}: unknown traits {sorted(words - _TRAITS)}")
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group,
        (version,),
        kind,
        plural,
        namespaced="cluster" not in words,
        short_names=tuple(short_names.split()),
        categories=_WORKLOAD if "workload" in words else (),
        status_subresource="status" in words,
        scale_subresource="scale" in words,
        extra_subresources=extra_subresources,
    )


def _istio(kind: str, plural: str, short_name: str) -> ResourceType:
    """Istio's traffic kinds are CRDs on a real cluster, hence custom=True."""
    return ResourceType(
        "networking.istio.io",
        _ISTIO_VERSIONS,
        kind,
        plural,
        short_names=(short_name,),
        categories=("istio-io", "networking-istio-io"),
        custom=True,
    )


_RBAC = "rbac.authorization.k8s.io/v1"

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("v1", "Namespace", "namespaces", "ns", "cluster status"),
    _builtin("v1", "Node", "nodes", "no", "cluster status"),
    _builtin("v1", "Pod", "pods", "po", "workload status", extra_subresources=("log",)),
    _builtin("v1", "Service", "services", "svc", "workload status"),
    _builtin("v1", "ConfigMap", "configmaps", "cm"),
    _builtin("v1", "Secret", "secrets"),
    _builtin("v1", "ServiceAccount", "serviceaccounts", "sa", extra_subresources=("token",)),
    _builtin("v1", "Event", "events", "ev"),
    _builtin("v1", "Endpoints", "endpoints", "ep"),
    _builtin("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "pvc", "status"),
    _builtin("apps/v1", "Deployment", "deployments", "deploy", "workload status scale"),
    _builtin("apps/v1", "ReplicaSet", "replicasets", "rs", "workload status scale"),
    _builtin("apps/v1", "StatefulSet", "statefulsets", "sts", "workload status scale"),
    _builtin("apps/v1", "DaemonSet", "daemonsets", "ds", "workload status"),
    _builtin("batch/v1", "Job", "jobs", "", "workload status"),
    _builtin("batch/v1", "CronJob", "cronjobs", "cj", "workload status"),
    _builtin(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "hpa",
        "workload status",
    ),
    _builtin("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", "pdb", "status"),
    _builtin("networking.k8s.io/v1", "Ingress", "ingresses", "ing", "status"),
    _builtin("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", "netpol"),
    _builtin(_RBAC, "Role", "roles"),
    _builtin(_RBAC, "RoleBinding", "rolebindings"),
    _builtin(_RBAC, "ClusterRole", "clusterroles", "", "cluster"),
    _builtin(_RBAC, "ClusterRoleBinding", "clusterrolebindings", "", "cluster"),
    _builtin(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "crd crds",
        "cluster status",
    ),
    _istio("VirtualService", "virtualservices", "vs"),
    _istio("DestinationRule", "destinationrules", "dr"),
    _istio("Gateway", "gateways", "gw"),
)


@dataclass(frozen=True)
class CustomKind:
    """A kind to serve generically, as a CRD would: `CustomKind("example.com", "v1", "Widget")`."""

    group: str
    version: str
    kind: str
    plural: str = ""
    namespaced: bool = True
    short_names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> CustomKind:
        """`group/version/Kind[/plural][/cluster]`, as the CLI's `--kind` takes it."""
        parts = spec.split("/")
        if len(parts) < 3 or not all(parts[:3]):
            raise ValueError(f"kind {spec!r}: expected group/version/Kind[/plural][/cluster]")
        group, version, kind, *rest = parts
        namespaced = "cluster" not in rest
        plural = next((p for p in rest if p and p != "cluster"), "")
        return cls(group, version, kind, plural, namespaced)

    def to_type(self) -> ResourceType:
        """The resource type this custom kind (from `--kind` or a CRD) serves."""
        return ResourceType(
            self.group,
            (self.version,),
            self.kind,
            self.plural or default_plural(self.kind),
            namespaced=self.namespaced,
            short_names=self.short_names,
            custom=True,
        )


def default_plural(kind: str) -> str:
    """The plural the API server derives for a kind without one (`Policy` → `policies`)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def type_from_crd(crd: dict[str, Any]) -> ResourceType | None:
    """The type a CustomResourceDefinition declares, or None when it is too incomplete to serve."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [
        v["name"] for v in spec.get("versions") or [] if v.get("served", True) and v.get("name")
    ]
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    if not (spec.get("group") and names.get("kind") and names.get("plural") and versions):
        return None
    ordered = tuple(storage[:1] + [v for v in versions if v not in storage[:1]])
    has_status = any("status" in (v.get("subresources") or {}) for v in spec.get("versions") or [])
    return ResourceType(
        spec["group"],
        ordered,
        names["kind"],
        names["plural"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status_subresource=has_status,
        custom=True,
    )


@dataclass
class Registry:
    """Every served type, looked up by REST path segments or by apiVersion and kind."""

    _types: dict[tuple[str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def default(cls, custom: Iterable[CustomKind] = ()) -> Registry:
        """The built-in types plus `custom` kinds."""
        registry = cls()
        for rtype in BUILTIN_TYPES:
            registry.add(rtype)
        for kind in custom:
            registry.add(kind.to_type())
        return registry

    def add(self, rtype: ResourceType) -> None:
        """Serve a type; adding versions to a served (group, plural) extends it."""
        existing = self._types.get(rtype.key)
        if existing is not None and existing != rtype:
            merged = existing.versions + tuple(
                v for v in rtype.versions if v not in existing.versions
            )
            rtype = dataclasses.replace(rtype, versions=merged)
        self._types[rtype.key] = rtype

    def remove(self, key: tuple[str, str]) -> None:
        """Stop serving a type (its CRD was deleted)."""
        self._types.pop(key, None)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types.values())

    def by_plural(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type at `/…/{group}/{version}/{plural}`, or None when that version isn't served."""
        rtype = self._types.get((group, plural))
        if rtype is None or version not in rtype.versions:
            return None
        return rtype

    def group_versions(self) -> dict[str, list[str]]:
        """Every group with its versions, preferred first; the core group is ""."""
        groups: dict[str, list[str]] = {}
        for rtype in self._types.values():
            versions = groups.setdefault(rtype.group, [])
            for version in rtype.versions:
                if version not in versions:
                    versions.append(version)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        """Every type that serves `version` in `group`."""
        return [t for t in self._types.values() if t.group == group and version in t.versions]
