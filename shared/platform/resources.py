"""The pure half of the platform adapter: what Slipway writes on objects, how healthy a rollout is.

Nothing here does I/O, so the executor and the tests can use it directly:

- `prepare_for_apply` turns a rendered `Manifest` into the body Slipway applies:
  the target namespace, Slipway's annotations and PipeCD's (so a team coming
  from PipeCD keeps its queries and dashboards: `managed-by`, `application`,
  `commit-hash`, `resource-key`, `original-api-version` and the variant, as
  PipeCD's `addBuiltinAnnotations` writes them; `pipecd.dev/piped` too when the
  platform provider names the piped it replaces, `pipedID`, which a Piped file's
  `spec.pipedID` fills), the `slipway.dev/application` label that
  live state and cascade delete select on, the variant label
  `pipecd.dev/variant` on workloads and their pod templates, and a workload's
  `pipecd.dev/config-hash` (computed by `confighash`) on its pod template.
- `rollout_status` reads a Deployment, StatefulSet or DaemonSet the way
  `kubectl rollout status` does and says whether it is healthy, still
  progressing (and why), or failed.
- `parse_key` splits a `Manifest.key` (`group/kind/namespace/name`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NamedTuple

import msgspec

from shared.config.manifests import Manifest

__all__ = [
    "ANNOTATION_APPLICATION",
    "ANNOTATION_COMMIT",
    "ANNOTATION_DEPLOYMENT",
    "FIELD_MANAGER",
    "LABEL_APPLICATION",
    "PIPECD_ANNOTATION_APPLICATION",
    "PIPECD_ANNOTATION_COMMIT_HASH",
    "PIPECD_ANNOTATION_FORCE_SYNC_BY_REPLACE",
    "PIPECD_ANNOTATION_MANAGED_BY",
    "PIPECD_ANNOTATION_ORDER",
    "PIPECD_ANNOTATION_ORIGINAL_API_VERSION",
    "PIPECD_ANNOTATION_RESOURCE_KEY",
    "PIPECD_ANNOTATION_SYNC_BY_REPLACE",
    "VARIANT_LABEL",
    "WORKLOAD_KINDS",
    "AppliedResource",
    "RolloutStatus",
    "apply_order",
    "describe",
    "parse_key",
    "pipecd_resource_key",
    "pod_template",
    "prepare_for_apply",
    "rollout_status",
    "sync_method",
]

FIELD_MANAGER: Final = "slipway"
LABEL_APPLICATION: Final = "slipway.dev/application"
ANNOTATION_APPLICATION: Final = "slipway.dev/application"
ANNOTATION_DEPLOYMENT: Final = "slipway.dev/deployment"
ANNOTATION_COMMIT: Final = "slipway.dev/commit"
# PipeCD writes these as annotations (its constants are named Label*, but it annotates).
PIPECD_ANNOTATION_APPLICATION: Final = "pipecd.dev/application"
PIPECD_ANNOTATION_COMMIT_HASH: Final = "pipecd.dev/commit-hash"
PIPECD_ANNOTATION_MANAGED_BY: Final = "pipecd.dev/managed-by"
PIPECD_ANNOTATION_PIPED: Final = "pipecd.dev/piped"
PIPECD_MANAGED_BY_PIPED: Final = "piped"
PIPECD_ANNOTATION_RESOURCE_KEY: Final = "pipecd.dev/resource-key"
PIPECD_ANNOTATION_ORIGINAL_API_VERSION: Final = "pipecd.dev/original-api-version"
# On a workload's pod template; the value comes from `shared.platform.confighash`.
PIPECD_ANNOTATION_CONFIG_HASH: Final = "pipecd.dev/config-hash"
# A real label: Services and traffic routing select pods on it.
VARIANT_LABEL: Final = "pipecd.dev/variant"
# Written by the config's author on a manifest, read as PipeCD's piped reads them.
PIPECD_ANNOTATION_ORDER: Final = "pipecd.dev/order"
PIPECD_ANNOTATION_SYNC_BY_REPLACE: Final = "pipecd.dev/sync-by-replace"
PIPECD_ANNOTATION_FORCE_SYNC_BY_REPLACE: Final = "pipecd.dev/force-sync-by-replace"
_ENABLED: Final = "enabled"


def apply_order(manifest: Manifest) -> int:
    """`pipecd.dev/order` as a number (PipeCD's `sortManifests`: unset or not a number is 0)."""
    value = _annotations(manifest).get(PIPECD_ANNOTATION_ORDER)
    try:
        return int(str(value).strip()) if value is not None else 0
    except ValueError:
        return 0


def sync_method(manifest: Manifest) -> Literal["apply", "replace", "force-replace"]:
    """How PipeCD syncs a manifest: `force-sync-by-replace: enabled` deletes and creates it
    (`kubectl replace --force`), `sync-by-replace: enabled` replaces it whole (`kubectl
    replace`, a PUT), anything else applies; the force annotation wins."""
    annotations = _annotations(manifest)
    if annotations.get(PIPECD_ANNOTATION_FORCE_SYNC_BY_REPLACE) == _ENABLED:
        return "force-replace"
    if annotations.get(PIPECD_ANNOTATION_SYNC_BY_REPLACE) == _ENABLED:
        return "replace"
    return "apply"


def _annotations(manifest: Manifest) -> Mapping[str, Any]:
    metadata = manifest.body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


# Kinds whose pods come from `spec.template`; CronJob's sit one level deeper.
WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


class AppliedResource(msgspec.Struct, frozen=True, kw_only=True):
    """One object as the cluster stored it after a server-side apply."""

    key: str  # group/kind/namespace/name, as `Manifest.key`
    api_version: str
    kind: str
    namespace: str  # "" when cluster-scoped
    name: str
    uid: str
    resource_version: str
    generation: int
    created: bool  # the apply created it (201) rather than updating it
    body: dict[str, Any]
    cluster: str = ""  # the platform provider it was applied to ("" when not named)


class RolloutStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How far a workload's rollout has got, in `kubectl rollout status` terms."""

    kind: str
    namespace: str
    name: str
    healthy: bool
    failed: bool  # the controller gave up (ProgressDeadlineExceeded)
    message: str  # what is happening, or why it failed, for a person
    desired: int
    updated: int
    ready: int
    available: int
    generation: int
    observed_generation: int
    condition_reason: str = ""  # the Progressing condition's reason, when there is one
    condition_message: str = ""

    @property
    def resource(self) -> str:
        """The object as people name it: `Deployment web (ns)`."""
        return describe(self.kind, self.namespace, self.name)


def describe(kind: str, namespace: str, name: str) -> str:
    """How errors name objects: `Deployment shop/web`, or `Namespace shop` when cluster-scoped."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def parse_key(key: str) -> tuple[str, str, str, str]:
    """Split `group/kind/namespace/name` (a `Manifest.key`) into its four parts."""
    parts = key.split("/")
    if len(parts) != 4 or not parts[1] or not parts[3]:
        raise ValueError(f"not a resource key (group/kind/namespace/name): {key!r}")
    group, kind, namespace, name = parts
    return group, kind, namespace, name


def pipecd_resource_key(manifest: Manifest, input_namespace: str = "") -> str:
    """`apiVersion:kind:namespace:name` as PipeCD keys (and annotates) a resource: the
    application's input namespace, else the manifest's, else `default` (even for a
    cluster-scoped object, as PipeCD does)."""
    namespace = input_namespace or manifest.namespace or "default"
    return f"{manifest.api_version}:{manifest.kind}:{namespace}:{manifest.name}"


def prepare_for_apply(
    manifest: Manifest,
    *,
    namespace: str,
    application_id: str,
    deployment_id: str,
    commit_hash: str,
    variant: str | None,
    add_variant_to_selector: bool = False,
    input_namespace: str = "",
    config_hash: str = "",
    variant_label: str = VARIANT_LABEL,
    piped_id: str = "",
    pipecd_application_id: str = "",
) -> dict[str, Any]:
    """The body to server-side apply for `manifest`: a copy, in `namespace` ("" = cluster-scoped),
    carrying Slipway's label and annotations and, for workloads, the variant label and
    (when not "") `config_hash` on the pod template. `input_namespace` is the application's
    namespace override, which PipeCD's resource key carries. `variant_label` is the
    application's `variantLabel.key` (PipeCD writes the variant under that key only);
    `piped_id`, when not "", is written as `pipecd.dev/piped`. `pipecd.dev/application` is
    `pipecd_application_id` when not "" (the PipeCD id an adopted application had, so
    queries by it keep finding its objects), else `application_id`.

    The selector is left alone unless asked: a Deployment's selector is immutable,
    so adding the variant to an existing one would make the apply fail.
    """
    body = copy.deepcopy(manifest.body)
    metadata = _mapping(body, "metadata")
    metadata.pop("managedFields", None)  # an apply body must not carry them
    if namespace:
        metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    labels = _mapping(metadata, "labels")
    labels[LABEL_APPLICATION] = application_id
    annotations = _mapping(metadata, "annotations")
    annotations.update(
        {
            ANNOTATION_APPLICATION: application_id,
            ANNOTATION_DEPLOYMENT: deployment_id,
            ANNOTATION_COMMIT: commit_hash,
            PIPECD_ANNOTATION_APPLICATION: pipecd_application_id or application_id,
            PIPECD_ANNOTATION_COMMIT_HASH: commit_hash,
            PIPECD_ANNOTATION_MANAGED_BY: PIPECD_MANAGED_BY_PIPED,
            PIPECD_ANNOTATION_RESOURCE_KEY: pipecd_resource_key(manifest, input_namespace),
            PIPECD_ANNOTATION_ORIGINAL_API_VERSION: manifest.api_version,
        }
    )
    if piped_id:
        annotations[PIPECD_ANNOTATION_PIPED] = piped_id
    if variant:
        annotations[variant_label] = variant  # PipeCD annotates every object with its variant
    template = pod_template(manifest.kind, body)
    if template is not None and config_hash:
        _mapping(_mapping(template, "metadata"), "annotations")[PIPECD_ANNOTATION_CONFIG_HASH] = (
            config_hash
        )
    if variant and template is not None:
        labels[variant_label] = variant
        _mapping(_mapping(template, "metadata"), "labels")[variant_label] = variant
        if add_variant_to_selector and manifest.kind != "CronJob":
            selector = _mapping(_mapping(body, "spec"), "selector")
            _mapping(selector, "matchLabels")[variant_label] = variant
    return body


def pod_template(kind: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload body (a CronJob's is under its job template), or None
    for kinds without one."""
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return None
    if kind == "CronJob":
        job = spec.get("jobTemplate")
        spec = job.get("spec") if isinstance(job, dict) else None
        if not isinstance(spec, dict):
            return None
    elif kind not in WORKLOAD_KINDS:
        return None
    template = spec.get("template")
    return template if isinstance(template, dict) else None


def _mapping(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]` as a dict, made when missing or null (a bare YAML `labels:`)."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


# rollout status


def rollout_status(obj: dict[str, Any]) -> RolloutStatus:
    """Read a live Deployment, StatefulSet or DaemonSet as `kubectl rollout status` would."""
    kind = str(obj.get("kind", ""))
    if kind == "Deployment":
        return _deployment_status(obj)
    if kind == "StatefulSet":
        return _statefulset_status(obj)
    if kind == "DaemonSet":
        return _daemonset_status(obj)
    raise ValueError(
        f"no rollout status for kind {kind!r}: only Deployment, StatefulSet, DaemonSet"
    )


def _parts(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return metadata, spec, status


def _int(mapping: dict[str, Any], key: str, default: int = 0) -> int:
    value = mapping.get(key)
    return value if isinstance(value, int) else default


# (healthy, message) for a workload whose spec update has been observed, given how to name
# it (`describe`).
_Verdict = Callable[[str], tuple[bool, str]]


class _Counts(NamedTuple):
    """A workload's replicas (or pods) as its kind counts them."""

    desired: int
    updated: int
    ready: int
    available: int


def _workload_status(
    kind: str,
    obj: dict[str, Any],
    counts: _Counts,
    verdict: _Verdict,
    *,
    gave_up: bool = False,
    condition_reason: str = "",
    condition_message: str = "",
) -> RolloutStatus:
    """What every kind shares: nothing counts until the controller has observed the spec
    update (`observedGeneration`); after that the kind's `verdict` decides, and the rollout
    has failed if the controller `gave_up`."""
    metadata = obj.get("metadata") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    what = describe(kind, namespace, name)
    generation = _int(metadata, "generation")
    observed = _int(obj.get("status") or {}, "observedGeneration")
    if observed < generation:
        healthy, failed = False, False
        message = f"waiting for the {what} spec update (generation {generation}) to be observed"
    else:
        healthy, message = verdict(what)
        failed = gave_up
    return RolloutStatus(
        kind=kind,
        namespace=namespace,
        name=name,
        desired=counts.desired,
        updated=counts.updated,
        ready=counts.ready,
        available=counts.available,
        healthy=healthy,
        failed=failed,
        message=message,
        generation=generation,
        observed_generation=observed,
        condition_reason=condition_reason,
        condition_message=condition_message,
    )


def _deployment_status(obj: dict[str, Any]) -> RolloutStatus:
    _metadata, spec, status = _parts(obj)
    desired = _int(spec, "replicas", 1)
    replicas = _int(status, "replicas")
    updated = _int(status, "updatedReplicas")
    ready = _int(status, "readyReplicas")
    available = _int(status, "availableReplicas")
    progressing = next(
        (
            c
            for c in status.get("conditions") or ()
            if isinstance(c, dict) and c.get("type") == "Progressing"
        ),
        {},
    )
    reason = str(progressing.get("reason", ""))
    condition_message = str(progressing.get("message", ""))
    gave_up = reason == "ProgressDeadlineExceeded"

    def verdict(what: str) -> tuple[bool, str]:
        if gave_up:
            deadline = spec.get("progressDeadlineSeconds")
            within = f" of {deadline}s" if isinstance(deadline, int) else ""
            return (
                False,
                f"{what} exceeded its progress deadline{within}: {ready} of {desired} replicas "
                f"ready, {updated} updated, {available} available"
                + (f" ({condition_message})" if condition_message else ""),
            )
        if updated < desired:
            return False, f"{what}: {updated} out of {desired} new replicas have been updated"
        if replicas > updated:
            return False, f"{what}: {replicas - updated} old replicas are pending termination"
        if available < updated:
            return False, f"{what}: {available} of {updated} updated replicas are available"
        return True, f"{what} successfully rolled out ({available} of {desired} available)"

    return _workload_status(
        "Deployment",
        obj,
        _Counts(desired, updated, ready, available),
        verdict,
        gave_up=gave_up,
        condition_reason=reason,
        condition_message=condition_message,
    )


def _statefulset_status(obj: dict[str, Any]) -> RolloutStatus:
    _metadata, spec, status = _parts(obj)
    desired = _int(spec, "replicas", 1)
    updated = _int(status, "updatedReplicas")
    ready = _int(status, "readyReplicas")
    available = _int(status, "availableReplicas", ready)
    strategy = spec.get("updateStrategy")
    rolling = strategy.get("rollingUpdate") if isinstance(strategy, dict) else None
    partition = _int(rolling, "partition") if isinstance(rolling, dict) else 0

    def verdict(what: str) -> tuple[bool, str]:
        if ready < desired:
            return False, f"{what}: {ready} of {desired} replicas are ready"
        if partition > 0 and updated < desired - partition:
            return False, f"{what}: {updated} of {desired - partition} partitioned replicas updated"
        if partition == 0 and status.get("updateRevision") != status.get("currentRevision"):
            return False, f"{what}: {updated} of {desired} replicas are on the new revision"
        return True, f"{what} successfully rolled out ({ready} of {desired} ready)"

    counts = _Counts(desired, updated, ready, available)
    return _workload_status("StatefulSet", obj, counts, verdict)


def _daemonset_status(obj: dict[str, Any]) -> RolloutStatus:
    _metadata, _spec, status = _parts(obj)
    desired = _int(status, "desiredNumberScheduled")
    updated = _int(status, "updatedNumberScheduled")
    available = _int(status, "numberAvailable")

    def verdict(what: str) -> tuple[bool, str]:
        if updated < desired:
            return False, f"{what}: {updated} out of {desired} new pods have been updated"
        if available < desired:
            return False, f"{what}: {available} of {desired} updated pods are available"
        return True, f"{what} successfully rolled out ({available} of {desired} available)"

    counts = _Counts(desired, updated, _int(status, "numberReady"), available)
    return _workload_status("DaemonSet", obj, counts, verdict)
