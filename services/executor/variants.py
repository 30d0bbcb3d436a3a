"""The manifests of a canary or baseline variant, made from the primary's (PipeCD's way).

For `K8S_CANARY_ROLLOUT` (and `K8S_BASELINE_ROLLOUT`) the workloads of the
application — `spec.workloads`, or every Deployment — are copied as
`<name>-<suffix>` with `replicas` pods (N, or N% of the primary's rounded up;
1 when the primary sets none), the variant label `pipecd.dev/variant: canary`
added to their selector and pod template. The ConfigMaps and Secrets are
copied as `<name>-<suffix>` too and the copies' references point at them, so
a canary of a config change sees the new config while the primary keeps the
old. With `createService`, the application's Service (`spec.service.name`, or
every Service) is copied as `<name>-<suffix>`, a ClusterIP selecting only the
variant's pods.

Every generated object carries the variant label in its own metadata too, so
the clean-up stages find them in the cluster by label, after any restart.
Patches (`with.patches`) are applied to the rendered manifests first; like
PipeCD, only `yaml-replace` is supported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import yaml

from shared.config.application import K8sResourcePatch, K8sResourceReference
from shared.config.manifests import Manifest
from shared.config.types import Replicas
from shared.errors import SlipwayError

__all__ = [
    "DEFAULT_VARIANT_LABEL",
    "VariantError",
    "apply_patches",
    "find_workloads",
    "variant_manifests",
    "variant_services",
]

DEFAULT_VARIANT_LABEL: Final = "pipecd.dev/variant"
_PATH_PART: Final = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\[\"([^\"]+)\"\]|\['([^']+)'\]")


class VariantError(SlipwayError, ValueError):
    """The variant cannot be made from these manifests; the message says why."""


def find_workloads(
    manifests: Iterable[Manifest], refs: Sequence[K8sResourceReference] = ()
) -> list[Manifest]:
    """The application's workloads: those `spec.workloads` names, or every Deployment."""
    manifests = list(manifests)
    if not refs:
        return [m for m in manifests if m.kind == "Deployment"]
    found: list[Manifest] = []
    for ref in refs:
        kind = ref.kind or "Deployment"
        found += [m for m in manifests if m.kind == kind and (not ref.name or m.name == ref.name)]
    return found


def variant_manifests(
    manifests: Sequence[Manifest],
    *,
    variant: str,
    suffix: str,
    replicas: Replicas,
    create_service: bool = False,
    service_name: str = "",
    workloads: Sequence[K8sResourceReference] = (),
    variant_label: str = DEFAULT_VARIANT_LABEL,
) -> list[Manifest]:
    """The objects of the `variant` (services first, then configs, then workloads)."""
    suffix = suffix or variant
    targets = find_workloads(manifests, workloads)
    if not targets:
        raise VariantError(f"no workload manifests to make the {variant.upper()} variant from")
    out: list[Manifest] = []
    if create_service:
        services = [
            m
            for m in manifests
            if m.kind == "Service" and (not service_name or m.name == service_name)
        ]
        if not services:
            raise VariantError(f"no Service named {service_name!r} to copy for the variant")
        out += [_service(m, variant, suffix, variant_label) for m in services]
    config_maps = [m for m in manifests if m.kind == "ConfigMap"]
    secrets = [m for m in manifests if m.kind == "Secret"]
    out += [_renamed(m, suffix, variant, variant_label) for m in (*config_maps, *secrets)]
    config_map_names = {m.name for m in config_maps}
    secret_names = {m.name for m in secrets}
    for workload in targets:
        if workload.kind != "Deployment":
            raise VariantError(f"unsupported workload kind {workload.kind} for a variant")
        out.append(
            _workload(
                workload, variant, suffix, replicas, variant_label, config_map_names, secret_names
            )
        )
    return out


def variant_services(
    manifests: Sequence[Manifest],
    *,
    variant: str,
    suffix: str,
    service_name: str = "",
    variant_label: str = DEFAULT_VARIANT_LABEL,
) -> list[Manifest]:
    """`<svc>-<suffix>` copies of the application's Service (`spec.service.name`, or every one)."""
    services = [
        m for m in manifests if m.kind == "Service" and (not service_name or m.name == service_name)
    ]
    if not services:
        raise VariantError(f"no Service named {service_name!r} to copy for the variant")
    return [_service(m, variant, suffix or variant, variant_label) for m in services]


def _suffixed(name: str, suffix: str) -> str:
    return f"{name}-{suffix}" if suffix else name


def _renamed(manifest: Manifest, suffix: str, variant: str, variant_label: str) -> Manifest:
    body = copy.deepcopy(manifest.body)
    name = _suffixed(manifest.name, suffix)
    metadata = _mapping(body, "metadata")
    metadata["name"] = name
    _mapping(metadata, "labels")[variant_label] = variant
    return Manifest(
        api_version=manifest.api_version,
        kind=manifest.kind,
        name=name,
        namespace=manifest.namespace,
        body=body,
        source=manifest.source,
    )


def _service(manifest: Manifest, variant: str, suffix: str, variant_label: str) -> Manifest:
    out = _renamed(manifest, suffix, variant, variant_label)
    spec = _mapping(out.body, "spec")
    spec["type"] = "ClusterIP"
    _mapping(spec, "selector")[variant_label] = variant
    # Addresses belong to the primary's Service; a copy gets its own.
    for field in ("clusterIP", "clusterIPs", "externalIPs", "loadBalancerIP",
                  "loadBalancerSourceRanges", "externalName"):  # fmt: skip
        spec.pop(field, None)
    for port in spec.get("ports") or ():
        if isinstance(port, dict):
            port.pop("nodePort", None)
    return out


def _workload(
    manifest: Manifest,
    variant: str,
    suffix: str,
    replicas: Replicas,
    variant_label: str,
    config_maps: set[str],
    secrets: set[str],
) -> Manifest:
    out = _renamed(manifest, suffix, variant, variant_label)
    spec = _mapping(out.body, "spec")
    current = spec.get("replicas")
    spec["replicas"] = replicas.calculate(current, 1) if isinstance(current, int) else 1
    _mapping(_mapping(spec, "selector"), "matchLabels")[variant_label] = variant
    template = _mapping(spec, "template")
    _mapping(_mapping(template, "metadata"), "labels")[variant_label] = variant
    pod = _mapping(template, "spec")

    def rename(name: object, known: set[str]) -> object:
        return _suffixed(name, suffix) if isinstance(name, str) and name in known else name

    for volume in pod.get("volumes") or ():
        if isinstance(config_map := volume.get("configMap"), dict):
            config_map["name"] = rename(config_map.get("name"), config_maps)
        if isinstance(secret := volume.get("secret"), dict):
            secret["secretName"] = rename(secret.get("secretName"), secrets)
    for container in [*(pod.get("initContainers") or ()), *(pod.get("containers") or ())]:
        for env in container.get("env") or ():
            source = env.get("valueFrom") if isinstance(env, dict) else None
            if isinstance(source, dict):
                if isinstance(ref := source.get("configMapKeyRef"), dict):
                    ref["name"] = rename(ref.get("name"), config_maps)
                if isinstance(ref := source.get("secretKeyRef"), dict):
                    ref["name"] = rename(ref.get("name"), secrets)
        for env_from in container.get("envFrom") or ():
            if isinstance(ref := env_from.get("configMapRef"), dict):
                ref["name"] = rename(ref.get("name"), config_maps)
            if isinstance(ref := env_from.get("secretRef"), dict):
                ref["name"] = rename(ref.get("name"), secrets)
    return out


def _mapping(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


# Patches ----------------------------------------------------------------------------------


def apply_patches(
    manifests: Sequence[Manifest], patches: Sequence[K8sResourcePatch]
) -> list[Manifest]:
    """`manifests` with each patch applied to the first manifest of its target kind and name."""
    out = list(manifests)
    for patch in patches:
        target = patch.target
        index = next(
            (i for i, m in enumerate(out) if m.kind == target.kind and m.name == target.name), None
        )
        if index is None:
            raise VariantError(
                f"no manifest matches the patch target kind={target.kind} name={target.name}"
            )
        out[index] = _patched(out[index], patch)
    return out


def _patched(manifest: Manifest, patch: K8sResourcePatch) -> Manifest:
    body = copy.deepcopy(manifest.body)
    root = patch.target.document_root
    if not root:
        for op in patch.ops:
            _replace(body, op.op, op.path, op.value)
    else:
        document = _get(body, root)
        if not isinstance(document, str):
            raise VariantError(f"the value at documentRoot {root} must be a string")
        inner = yaml.safe_load(document)
        for op in patch.ops:
            _replace(inner, op.op, op.path, op.value)
        _set(body, root, yaml.safe_dump(inner, sort_keys=False))
    return Manifest(
        api_version=manifest.api_version,
        kind=manifest.kind,
        name=manifest.name,
        namespace=manifest.namespace,
        body=body,
        source=manifest.source,
    )


def _replace(document: Any, op: str, path: str, value: str) -> None:
    if op != "yaml-replace":
        raise VariantError(f"patch operation {op} is not supported (only yaml-replace)")
    _get(document, path)  # the path must exist, as PipeCD's ReplaceString requires
    _set(document, path, value)


def _parts(path: str) -> list[str | int]:
    """`$.spec.template.spec.containers[0].image` → ["spec", "template", …, 0, "image"]."""
    if not path.startswith("$"):
        raise VariantError(f"patch path {path!r} must start with $")
    rest, parts, position = path[1:], [], 0
    while position < len(rest):
        match = _PATH_PART.match(rest, position)
        if match is None:
            raise VariantError(f"cannot read patch path {path!r} at {rest[position:]!r}")
        key, index, quoted, single = match.groups()
        parts.append(int(index) if index is not None else (key or quoted or single))
        position = match.end()
    if not parts:
        raise VariantError(f"patch path {path!r} names no field")
    return parts


def _get(document: Any, path: str) -> Any:
    node = document
    for part in _parts(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise VariantError(f"patch path {path} does not exist in the manifest") from None
    return node


def _set(document: Any, path: str, value: Any) -> None:
    *parents, last = _parts(path)
    node = document
    for part in parents:
        node = node[part]
    node[last] = value
