"""Writing an application's objects to a cluster: server-side apply (or PipeCD's replace) in
order, and deleting them.

**apply** is server-side apply (`PATCH` as `application/apply-patch+yaml`,
field manager `slipway`, `force=true` by default so Slipway, the source of
truth, takes fields back from `kubectl edit`). Each object is prepared by
`resources.prepare_for_apply` (labels and annotations, see there). A manifest
annotated `pipecd.dev/sync-by-replace` / `force-sync-by-replace: enabled` is
replaced (PUT) / deleted and created instead, and `pipecd.dev/order` sorts
the batch, as PipeCD's piped does (`resources.sync_method`, `apply_order`).
`KubernetesPlatform` calls these with its connection and settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

from opentelemetry import trace

from shared.config.manifests import Manifest
from shared.errors import NotFound, PlatformError, ResourceConflict
from shared.logs import get_logger
from shared.platform.apiserver import ApiServer
from shared.platform.confighash import config_hashes
from shared.platform.discovery import ApiResource, Discovery
from shared.platform.resources import (
    VARIANT_LABEL,
    AppliedResource,
    apply_order,
    describe,
    prepare_for_apply,
    sync_method,
)

__all__ = ["Propagation", "apply", "delete"]

log = get_logger(__name__)

Propagation = Literal["Background", "Foreground", "Orphan"]

# Applied before everything else, deleted after: other objects live inside them.
_CONTAINERS: Final = ("Namespace", "CustomResourceDefinition")
_RECREATE_ATTEMPTS: Final = 20  # force-sync-by-replace: about 30 s for the old object to go
_APPLY_PATCH: Final = "application/apply-patch+yaml"


async def apply(
    api: ApiServer,
    discovery: Discovery,
    manifests: Sequence[Manifest],
    *,
    cluster: str,
    field_manager: str,
    piped_id: str,
    application_id: str,
    deployment_id: str,
    commit_hash: str,
    variant: str | None = "primary",
    namespace: str | None = None,
    force_conflicts: bool = True,
    auto_create_namespace: bool = False,
    add_variant_to_selector: bool = False,
    variant_label: str = VARIANT_LABEL,
    pipecd_application_id: str = "",
) -> list[AppliedResource]:
    """Server-side apply `manifests`, Namespaces and CRDs first, then in the given order.

    `namespace` overrides every namespaced object's namespace (else the
    manifest's, else `default`). `variant` (None for none) labels workloads
    and their pod templates with `variant_label` (the application's
    `variantLabel.key`, `pipecd.dev/variant` by default); a workload using
    ConfigMaps or Secrets of the batch gets their hash as its pod template's
    `pipecd.dev/config-hash` (`confighash`), so a config change rolls it. With
    `auto_create_namespace`, a missing target namespace is created (plain,
    unlabelled: deleting the application must not delete it). `pipecd_application_id`
    (an adopted application's PipeCD id) is written as `pipecd.dev/application`
    instead of `application_id`. The first failure stops the batch and is raised;
    objects before it stay applied.
    """
    trace.get_current_span().set_attribute("slipway.k8s.manifests", len(manifests))
    # Namespaces and CRDs first, then by `pipecd.dev/order` (a stable sort: ties keep
    # the given order), as PipeCD's piped sorts what it loads.
    ordered = sorted(manifests, key=lambda m: (m.kind not in _CONTAINERS, apply_order(m)))
    in_batch = {m.name for m in manifests if m.kind == "Namespace"}
    config_hash = config_hashes(manifests)  # over this batch: a canary's own copies
    ensured: set[str] = set()
    applied: list[AppliedResource] = []
    for manifest in ordered:
        resource = await discovery.require(manifest.api_version, manifest.kind, manifest, "apply")
        target = (namespace or manifest.namespace or "default") if resource.namespaced else ""
        what = describe(manifest.kind, target, manifest.name)
        if auto_create_namespace and target and target not in ensured | in_batch:
            await _ensure_namespace(api, discovery, target, what)
            ensured.add(target)
        body = prepare_for_apply(
            manifest,
            namespace=target,
            application_id=application_id,
            deployment_id=deployment_id,
            commit_hash=commit_hash,
            variant=variant,
            add_variant_to_selector=add_variant_to_selector,
            variant_label=variant_label,
            input_namespace=namespace or "",
            config_hash=config_hash.get(manifest.key, ""),
            piped_id=piped_id,
            pipecd_application_id=pipecd_application_id,
        )
        method = sync_method(manifest)
        if method != "apply":
            stored, code = await _replace(
                api,
                field_manager,
                resource,
                target,
                manifest.name,
                body,
                what,
                force=method == "force-replace",
            )
        else:
            query = [("fieldManager", field_manager)]
            if force_conflicts:
                query.append(("force", "true"))
            stored, code = await api.request(
                "PATCH",
                resource.path(target, manifest.name),
                verb="apply",
                what=what,
                query=query,
                body=body,
                content_type=_APPLY_PATCH,
            )
        metadata = stored.get("metadata") or {}
        applied.append(
            AppliedResource(
                key=f"{resource.group}/{manifest.kind}/{target}/{manifest.name}",
                api_version=resource.api_version,
                kind=manifest.kind,
                namespace=target,
                name=manifest.name,
                uid=str(metadata.get("uid", "")),
                resource_version=str(metadata.get("resourceVersion", "")),
                generation=int(metadata.get("generation") or 0),
                created=code == 201,
                body=stored,
                cluster=cluster,
            )
        )
        log.debug("platform_applied", resource=what, created=code == 201)
        if manifest.kind == "CustomResourceDefinition":
            discovery.forget()  # its kind is served now: live state lists it
    return applied


async def _replace(
    api: ApiServer,
    field_manager: str,
    resource: ApiResource,
    namespace: str,
    name: str,
    body: dict[str, Any],
    what: str,
    *,
    force: bool,
) -> tuple[dict[str, Any], int]:
    """PipeCD's sync-by-replace: PUT the whole object (`kubectl replace`), or with `force`
    delete it and create it again (`kubectl replace --force`); created when missing."""
    query = [("fieldManager", field_manager)]
    path = resource.path(namespace, name)
    if not force:
        try:
            return await api.request("PUT", path, verb="replace", what=what, query=query, body=body)
        except NotFound:
            pass
    else:
        options = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        with contextlib.suppress(NotFound):
            await api.request("DELETE", path, verb="delete", what=what, body=options)
    delay = 0.1
    for _ in range(_RECREATE_ATTEMPTS):
        try:
            return await api.request(
                "POST",
                resource.path(namespace),
                verb="create",
                what=what,
                query=query,
                body=body,
            )
        except ResourceConflict:
            # Still terminating after the delete (finalizers, graceful deletion).
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise ResourceConflict(f"cannot re-create {what}: it is still being deleted", resource=what)


async def delete(
    api: ApiServer,
    discovery: Discovery,
    targets: Iterable[str | Manifest],
    *,
    propagation: Propagation = "Background",
    namespace: str | None = None,
    failures: list[tuple[str, PlatformError]] | None = None,
) -> list[str]:
    """Delete objects by `Manifest` or key (`group/kind/namespace/name`); Namespaces last.

    Returns the keys of the objects this call deleted; one already gone (or
    whose kind the cluster no longer serves) is skipped, not an error.
    `namespace` overrides manifests' namespaces, as in `apply`. The first
    object the cluster refuses raises, unless `failures` is given: then each
    refused object's key and error are added to it and the rest still go
    (a cascade delete says what it could not delete instead of stopping).
    """
    resolved: list[tuple[ApiResource, str, str]] = []
    for target in targets:
        found = await discovery.locate(target, namespace)
        if found is not None:
            resolved.append(found)
    resolved.sort(key=lambda r: r[0].kind in _CONTAINERS)
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
    deleted: list[str] = []
    for resource, target_ns, name in resolved:
        what = describe(resource.kind, target_ns, name)
        key = f"{resource.group}/{resource.kind}/{target_ns}/{name}"
        try:
            await api.request(
                "DELETE", resource.path(target_ns, name), verb="delete", what=what, body=body
            )
        except NotFound:
            continue
        except PlatformError as exc:
            if failures is None:
                raise
            failures.append((key, exc))
            continue
        deleted.append(key)
        log.debug("platform_deleted", resource=what)
    return deleted


async def _ensure_namespace(
    api: ApiServer, discovery: Discovery, namespace: str, needed_by: str
) -> None:
    namespaces = await discovery.require("v1", "Namespace", None, "create", "", namespace)
    what = f"Namespace {namespace} (for {needed_by})"
    try:
        await api.request("GET", namespaces.path("", namespace), verb="get", what=what)
        return
    except NotFound:
        pass
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    try:
        await api.request("POST", namespaces.path(), verb="create", what=what, body=body)
    except ResourceConflict:
        return  # created meanwhile by someone else: just as good
    log.info("platform_namespace_created", namespace=namespace)
