"""Defaulting and validation of built-in kinds, as the API server does before storing.

Defaults are the ones clients read back and rely on (a Deployment's
replicas, strategy and progress deadline; a Service's clusterIP and
targetPort; a container's pull policy). Validation covers what a manifest
most often gets wrong — names, labels, a selector that does not match its
template, containers without an image, an immutable selector — and answers
`422 Invalid` with one cause per field, like the real server.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from kubesim.errors import ApiError, Cause, invalid
from kubesim.resources import ResourceType
from kubesim.selectors import from_label_selector_object, labels_match
from kubesim.store import Obj

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_NAMED = frozenset({"Namespace", "Service"})  # names that must be DNS-1123 labels
_WORKLOADS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"})

_cluster_ips = itertools.count(10)
_node_ports = itertools.count(30000)


def apply_defaults(rtype: ResourceType, obj: Obj) -> None:
    """Fill the defaults a real server fills, in place."""
    kind = rtype.kind if not rtype.custom else ""
    spec = obj.get("spec")
    if kind == "Namespace":
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    if not isinstance(spec, dict):
        return
    if kind in _WORKLOADS:
        if kind != "DaemonSet":
            spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        _default_pod_spec((spec.get("template") or {}).get("spec"))
    if kind == "Deployment":
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
    elif kind == "Pod":
        _default_pod_spec(spec)
    elif kind == "Service":
        _default_service(spec)


def _default_pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _default_service(spec: dict[str, Any]) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        if "clusterIP" not in spec:
            n = next(_cluster_ips)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
        if spec["type"] in ("NodePort", "LoadBalancer"):
            port.setdefault("nodePort", next(_node_ports))


def validate(rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Raise `422 Invalid` listing every problem found."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    causes = _metadata_causes(rtype, meta)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if not rtype.custom:
        if rtype.kind in _WORKLOADS:
            causes += _workload_causes(spec or {}, (old or {}).get("spec") if old else None)
        elif rtype.kind == "Pod":
            causes += _containers_causes("spec", spec or {})
        elif rtype.kind == "Service":
            causes += _service_causes(spec or {})
    if causes:
        raise invalid(rtype.kind, rtype.group, name, causes)


def _metadata_causes(rtype: ResourceType, meta: dict[str, Any]) -> list[Cause]:
    causes = []
    name = meta.get("name")
    if not name:
        causes.append(
            Cause(
                "metadata.name",
                "Required value: name or generateName is required",
                "FieldValueRequired",
            )
        )
    else:
        pattern, limit = (_LABEL, 63) if rtype.kind in _LABEL_NAMED else (_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            causes.append(
                Cause(
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case'
                    " alphanumeric characters, '-' or '.', and must start and end with an"
                    " alphanumeric character",
                )
            )
    causes += _labels_causes("metadata.labels", meta.get("labels"))
    return causes


def _labels_causes(field: str, labels: Any) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [Cause(field, "Invalid value: must be a map of strings", "FieldValueTypeInvalid")]
    causes = []
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if not _QUALIFIED_NAME.match(name) or len(name) > 63:
            causes.append(
                Cause(field, f'Invalid value: "{key}": name part must be a valid label key')
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    f"{field}",
                    f'Invalid value: "{value}": a valid label must be an empty string'
                    " or consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
    return causes


def _workload_causes(spec: dict[str, Any], old_spec: Any) -> list[Cause]:
    causes: list[Cause] = []
    replicas = spec.get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(
            Cause("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")
        )
    selector = spec.get("selector")
    raw_template = spec.get("template")
    template: dict[str, Any] = raw_template if isinstance(raw_template, dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(Cause("spec.selector", "Required value", "FieldValueRequired"))
    else:
        try:
            requirements = from_label_selector_object(selector)
        except ApiError:
            requirements = ()
            causes.append(Cause("spec.selector", "Invalid value: invalid label selector"))
        if not requirements:
            causes.append(
                Cause("spec.selector", "Invalid value: empty selector is invalid for deployment")
            )
        elif not labels_match(requirements, labels):
            causes.append(
                Cause(
                    "spec.template.metadata.labels",
                    f"Invalid value: {labels}: `selector` does not match template `labels`",
                )
            )
        if (
            isinstance(old_spec, dict)
            and old_spec.get("selector")
            and old_spec["selector"] != selector
        ):
            causes.append(Cause("spec.selector", f"Invalid value: {selector}: field is immutable"))
    causes += _labels_causes("spec.template.metadata.labels", labels)
    causes += _containers_causes("spec.template.spec", template.get("spec") or {})
    return causes


def _containers_causes(prefix: str, pod_spec: dict[str, Any]) -> list[Cause]:
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [Cause(f"{prefix}.containers", "Required value", "FieldValueRequired")]
    causes, seen = [], set()
    for n, container in enumerate(containers):
        where = f"{prefix}.containers[{n}]"
        if not isinstance(container, dict):
            causes.append(Cause(where, "Invalid value: must be an object", "FieldValueTypeInvalid"))
            continue
        name = container.get("name")
        if not name:
            causes.append(Cause(f"{where}.name", "Required value", "FieldValueRequired"))
        elif name in seen:
            causes.append(
                Cause(f"{where}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
            )
        seen.add(name)
        if not container.get("image"):
            causes.append(Cause(f"{where}.image", "Required value", "FieldValueRequired"))
    return causes


def _service_causes(spec: dict[str, Any]) -> list[Cause]:
    causes = []
    for n, port in enumerate(spec.get("ports") or []):
        value = port.get("port") if isinstance(port, dict) else None
        if not isinstance(value, int) or not 0 < value < 65536:
            causes.append(
                Cause(
                    f"spec.ports[{n}].port",
                    f"Invalid value: {value}: must be between 1 and 65535, inclusive",
                )
            )
    return causes
