"""The Kubernetes platform adapter: apply, delete, read live state and wait for rollouts.

It speaks the API server's REST paths through `kubernetes_asyncio`'s `ApiClient`
(one per cluster, from a kubeconfig and context, never the process-wide
default), so it works the same against a real cluster and against kubesim.

- **apply** is server-side apply (`PATCH` as `application/apply-patch+yaml`,
  field manager `slipway`, `force=true` by default so Slipway, the source of
  truth, takes fields back from `kubectl edit`). Each object is prepared by
  `resources.prepare_for_apply` (labels and annotations, see there). A manifest
  annotated `pipecd.dev/sync-by-replace` / `force-sync-by-replace: enabled` is
  replaced (PUT) / deleted and created instead, and `pipecd.dev/order` sorts
  the batch, as PipeCD's piped does (`resources.sync_method`, `apply_order`).
- **Discovery** (`discovery`) maps a kind to its plural and scope, cached per
  group/version and refreshed once on a miss.
- **Live state** lists every kind discovery serves (custom resources too),
  filtered by `livekinds.LiveKinds` (PipeCD's `appStateInformer`), for the
  objects labelled `slipway.dev/application`; what a controller owns is left out.
- **Requests and errors** (`apiserver`): every request goes through
  `ApiServer.request`, which maps the server's refusals to the `PlatformError`
  subtree, each naming the operation and the object.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Final, Literal, ParamSpec, Self, TypeVar

from opentelemetry import trace

from shared.config.control import KubernetesProviderConfig
from shared.config.manifests import Manifest
from shared.errors import NotFound, PlatformError, ResourceConflict, RolloutFailed
from shared.logs import get_logger
from shared.platform.adoption import AdoptionRefused, pipecd_objects, takeover_patch
from shared.platform.apiserver import ApiServer
from shared.platform.confighash import config_hashes
from shared.platform.discovery import ApiResource, Discovery
from shared.platform.livekinds import LiveKinds, controlled
from shared.platform.resources import (
    FIELD_MANAGER,
    LABEL_APPLICATION,
    VARIANT_LABEL,
    AppliedResource,
    RolloutStatus,
    apply_order,
    describe,
    prepare_for_apply,
    rollout_status,
    sync_method,
)

__all__ = ["KubernetesPlatform", "Propagation"]

log = get_logger(__name__)

Propagation = Literal["Background", "Foreground", "Orphan"]

# Applied before everything else, deleted after: other objects live inside them.
_CONTAINERS: Final = ("Namespace", "CustomResourceDefinition")
_LIST_CONCURRENCY: Final = 8
# What controllers make for an application's objects (never labelled for it): the live
# tree follows ownerReferences down to them, in the namespaces of its objects only.
_OWNED_KINDS: Final = (("apps", "ReplicaSet"), ("", "Pod"), ("batch", "Job"))
_MAX_TREE_NAMESPACES: Final = 20
_RECREATE_ATTEMPTS: Final = 20  # force-sync-by-replace: about 30 s for the old object to go
_APPLY_PATCH: Final = "application/apply-patch+yaml"
_MERGE_PATCH: Final = "application/merge-patch+json"
_JSON_PATCH: Final = "application/json-patch+json"


_tracer = trace.get_tracer("slipway.platform.kubernetes")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S")


def _spanned(
    name: str,
) -> Callable[
    [Callable[Concatenate[_S, _P], Awaitable[_R]]], Callable[Concatenate[_S, _P], Awaitable[_R]]
]:
    """Run the operation in a child span of the caller's (a stage's), so a trace shows each
    call to the cluster, how long it took and the error it raised."""

    def wrap(
        method: Callable[Concatenate[_S, _P], Awaitable[_R]],
    ) -> Callable[Concatenate[_S, _P], Awaitable[_R]]:
        @functools.wraps(method)
        async def spanned(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            with _tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT):
                return await method(self, *args, **kwargs)

        return spanned

    return wrap


class KubernetesPlatform:
    """One Kubernetes cluster, reached through a kubeconfig file and context.

    Without a kubeconfig (None or ""), the in-cluster service account is used
    (a replica running as a pod deploys to its own cluster); its token file is
    re-read as the kubelet rotates it.

    Use it as an async context manager (or `open()` / `close()`); it owns its
    HTTP session. Every method may raise the `PlatformError` subtree.
    """

    def __init__(
        self,
        kubeconfig: str | Path | None,
        context: str | None = None,
        *,
        field_manager: str = FIELD_MANAGER,
        request_timeout_s: float = 30.0,
        live_kinds: LiveKinds | None = None,
        discovery_max_age_s: float = 60.0,
        piped_id: str = "",
        name: str = "",
    ) -> None:
        self.name = name
        """The platform provider this cluster is, written on what it applies and lists
        (`AppliedResource.cluster`, `Manifest.cluster`); "" when not named."""
        self.field_manager = field_manager
        self.piped_id = piped_id
        """Written as `pipecd.dev/piped` on every applied object when set (the provider's
        `pipedID`), as the piped a team ran before wrote it."""
        self.live_kinds = live_kinds or LiveKinds()
        # How stale the list of served kinds may be: a CRD installed by someone else
        # shows in live state after this long (one applied through us at once).
        self.discovery_max_age_s = discovery_max_age_s
        self._api = ApiServer(
            Path(kubeconfig) if kubeconfig else None, context, request_timeout_s=request_timeout_s
        )
        self._discovery = Discovery(self._api)

    @classmethod
    def from_config(cls, config: KubernetesProviderConfig, name: str = "") -> Self:
        """The cluster of a platform provider's config (no kubeconfigPath: in-cluster),
        listing the kinds its `appStateInformer` selects; `name` is the provider's."""
        informer = config.app_state_informer
        live_kinds = LiveKinds.of(
            include=[(m.api_version, m.kind) for m in informer.include_resources],
            exclude=[(m.api_version, m.kind) for m in informer.exclude_resources],
            namespace=informer.namespace,
        )
        return cls(
            config.kubeconfig_path or None,
            config.context or None,
            live_kinds=live_kinds,
            piped_id=config.piped_id,
            name=name,
        )

    # lifecycle

    async def open(self) -> Self:
        """Load the kubeconfig into a client of our own; a bad file or context is a ConfigError."""
        await self._api.open()
        return self

    async def close(self) -> None:
        """Close the connection to the API server."""
        await self._api.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # operations

    @_spanned("kubernetes apply")
    async def apply(
        self,
        manifests: Sequence[Manifest],
        *,
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
            resource = await self._discovery.require(
                manifest.api_version, manifest.kind, manifest, "apply"
            )
            target = (namespace or manifest.namespace or "default") if resource.namespaced else ""
            what = describe(manifest.kind, target, manifest.name)
            if auto_create_namespace and target and target not in ensured | in_batch:
                await self._ensure_namespace(target, what)
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
                piped_id=self.piped_id,
                pipecd_application_id=pipecd_application_id,
            )
            method = sync_method(manifest)
            if method != "apply":
                stored, code = await self._replace(
                    resource, target, manifest.name, body, what, force=method == "force-replace"
                )
            else:
                query = [("fieldManager", self.field_manager)]
                if force_conflicts:
                    query.append(("force", "true"))
                stored, code = await self._api.request(
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
                    cluster=self.name,
                )
            )
            log.debug("platform_applied", resource=what, created=code == 201)
            if manifest.kind == "CustomResourceDefinition":
                self._discovery.forget()  # its kind is served now: live state lists it
        return applied

    async def _replace(
        self,
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
        query = [("fieldManager", self.field_manager)]
        path = resource.path(namespace, name)
        if not force:
            try:
                return await self._api.request(
                    "PUT", path, verb="replace", what=what, query=query, body=body
                )
            except NotFound:
                pass
        else:
            options = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "propagationPolicy": "Background",
            }
            with contextlib.suppress(NotFound):
                await self._api.request("DELETE", path, verb="delete", what=what, body=options)
        delay = 0.1
        for _ in range(_RECREATE_ATTEMPTS):
            try:
                return await self._api.request(
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

    @_spanned("kubernetes delete")
    async def delete(
        self,
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
            found = await self._discovery.locate(target, namespace)
            if found is not None:
                resolved.append(found)
        resolved.sort(key=lambda r: r[0].kind in _CONTAINERS)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        deleted: list[str] = []
        for resource, target_ns, name in resolved:
            what = describe(resource.kind, target_ns, name)
            key = f"{resource.group}/{resource.kind}/{target_ns}/{name}"
            try:
                await self._api.request(
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

    async def get(
        self, target: str | Manifest, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The live object, or None when it (or its kind) does not exist."""
        found = await self._discovery.locate(target, namespace)
        if found is None:
            return None
        resource, target_ns, name = found
        try:
            obj, _ = await self._api.request(
                "GET",
                resource.path(target_ns, name),
                verb="get",
                what=describe(resource.kind, target_ns, name),
            )
        except NotFound:
            return None
        return obj

    async def live_resources(
        self, application_id: str, *, kinds: Iterable[tuple[str, str]] | None = None
    ) -> list[Manifest]:
        """Every object labelled `slipway.dev/application=<id>`, of every kind live state covers
        (`live_kinds`), or of `kinds` (group, kind) only; what a controller owns is left out.

        Sorted by key, `managedFields` dropped; kinds the cluster does not serve are skipped.
        """
        selector = f"{LABEL_APPLICATION}={application_id}"
        found = await self.list_objects(label_selector=selector, kinds=kinds)
        return sorted(
            (
                _live_manifest(resource, item, self.name)
                for resource, item in found
                if not controlled(item)
            ),
            key=lambda m: m.key,
        )

    async def live_tree(self, application_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(apiVersion, kind, object) of every object labelled for the application, and of
        the ReplicaSets, Pods and Jobs they own (through ownerReferences, at any depth), for
        `livetree.observe`. Only the namespaces of the labelled objects are listed (at most
        `_MAX_TREE_NAMESPACES` of them), each kind once per namespace."""
        selector = f"{LABEL_APPLICATION}={application_id}"
        labelled = await self.list_objects(label_selector=selector)
        found = [(r.api_version, r.kind, item) for r, item in labelled]
        namespaces = sorted(
            {
                ns
                for r, item in labelled
                if r.namespaced and (ns := str((item.get("metadata") or {}).get("namespace", "")))
            }
        )[:_MAX_TREE_NAMESPACES]
        if self.live_kinds.namespace:
            namespaces = [ns for ns in namespaces if ns == self.live_kinds.namespace]
        owned_kinds = await self._resources(_OWNED_KINDS)
        limit = asyncio.Semaphore(_LIST_CONCURRENCY)

        async def listed(resource: ApiResource, namespace: str) -> list[tuple[str, str, Any]]:
            async with limit:
                answer, _ = await self._api.request(
                    "GET",
                    resource.path(namespace),
                    verb="list",
                    what=f"{resource.kind} in {namespace}",
                )
            return [
                (resource.api_version, resource.kind, item)
                for item in answer.get("items") or ()
                if isinstance(item, dict)
            ]

        candidates: list[tuple[str, str, dict[str, Any]]] = []
        for batch in await asyncio.gather(
            *(listed(r, ns) for r in owned_kinds for ns in namespaces)
        ):
            candidates += batch
        return found + _descendants(found, candidates)

    async def list_objects(
        self, *, label_selector: str = "", kinds: Iterable[tuple[str, str]] | None = None
    ) -> list[tuple[ApiResource, dict[str, Any]]]:
        """(kind, object) of every object of the live kinds (or `kinds`) matching the selector,
        in `live_kinds.namespace` when set; objects keep their `managedFields`."""
        resources = await self._resources(kinds)
        limit = asyncio.Semaphore(_LIST_CONCURRENCY)
        query = [("labelSelector", label_selector)] if label_selector else []

        async def listed(resource: ApiResource) -> list[tuple[ApiResource, dict[str, Any]]]:
            async with limit:
                answer, _ = await self._api.request(
                    "GET",
                    resource.path(self.live_kinds.namespace),
                    verb="list",
                    what=f"{resource.kind} labelled {label_selector or '(any)'}",
                    query=query,
                )
            return [(resource, item) for item in answer.get("items") or () if item]

        found: list[tuple[ApiResource, dict[str, Any]]] = []
        for batch in await asyncio.gather(*(listed(r) for r in resources)):
            found += batch
        return found

    async def _resources(self, kinds: Iterable[tuple[str, str]] | None) -> list[ApiResource]:
        if kinds is None:
            served = await self._discovery.listable_kinds(self.discovery_max_age_s)
            return [r for r in served if self.live_kinds.matches(r.api_version, r.kind)]
        resources = []
        for group, kind in dict.fromkeys(kinds):
            version = await self._discovery.preferred_version(group)
            resource = await self._discovery.lookup(group, version, kind) if version else None
            if resource is not None:
                resources.append(resource)
        return resources

    async def pipecd_objects(
        self, pipecd_application_id: str
    ) -> list[tuple[ApiResource, dict[str, Any]]]:
        """The objects piped applied for `pipecd_application_id`, with their managedFields;
        `AdoptionRefused` when there are none. Lists every object of the live kinds (no
        selector can pick an annotation): meant for a one-off `slipway app import`."""
        listed = [(r, item) for r, item in await self.list_objects() if not controlled(item)]
        wanted = {
            id(item) for item in pipecd_objects((i for _, i in listed), pipecd_application_id)
        }
        found = [(resource, item) for resource, item in listed if id(item) in wanted]
        if not found:
            raise AdoptionRefused(
                f"no object in the cluster is annotated pipecd.dev/application="
                f"{pipecd_application_id} (and pipecd.dev/managed-by=piped)"
            )
        return found

    @_spanned("kubernetes take_over")
    async def take_over(
        self, found: Sequence[tuple[ApiResource, dict[str, Any]]], application_id: str, *, now: str
    ) -> list[str]:
        """Hand each object's client-side-apply fields to this field manager and label it for
        `application_id` (`adoption.takeover_patch`); the keys, sorted. `now` (RFC 3339) is
        the managedFields entry's time. An object changed since it was read fails its
        patch's test (`Invalid` or `ResourceConflict`): list and take over again."""
        keys: list[str] = []
        for resource, item in found:
            metadata = item.get("metadata") or {}
            namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
            patch = takeover_patch(
                item,
                application_id=application_id,
                manager=self.field_manager,
                api_version=resource.api_version,
                time=now,
            )
            await self._api.request(
                "PATCH",
                resource.path(namespace, name),
                verb="take over",
                what=describe(resource.kind, namespace, name),
                query=[("fieldManager", self.field_manager)],
                body=patch,
                content_type=_JSON_PATCH,
            )
            keys.append(f"{resource.group}/{resource.kind}/{namespace}/{name}")
        return sorted(keys)

    @_spanned("kubernetes wait_rollout")
    async def wait_rollout(
        self,
        namespace: str,
        name: str,
        *,
        kind: str = "Deployment",
        timeout_s: float,
        poll_s: float = 0.5,
    ) -> RolloutStatus:
        """Poll the workload until its rollout is healthy; `RolloutFailed` when its progress
        deadline is exceeded or `timeout_s` passes, saying how many replicas were ready."""
        resource = await self._discovery.require("apps/v1", kind, None, "wait for", namespace, name)
        what = describe(kind, namespace, name)
        trace.get_current_span().set_attribute("slipway.k8s.resource", what)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            obj, _ = await self._api.request(
                "GET", resource.path(namespace, name), verb="wait for", what=what
            )
            status = rollout_status(obj)
            if status.healthy:
                return status
            if status.failed:
                raise RolloutFailed(
                    status.message, resource=what, reason=status.condition_reason, code=0
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RolloutFailed(_timed_out(status, timeout_s), resource=what, reason="Timeout")
            await asyncio.sleep(min(poll_s, remaining))

    async def scale(
        self, namespace: str, name: str, replicas: int, *, kind: str = "Deployment"
    ) -> None:
        """Set a workload's replicas through its `scale` subresource, as `kubectl scale` does."""
        resource = await self._discovery.require("apps/v1", kind, None, "scale", namespace, name)
        await self._api.request(
            "PATCH",
            resource.path(namespace, name) + "/scale",
            verb="scale",
            what=describe(kind, namespace, name),
            body={"spec": {"replicas": replicas}},
            content_type=_MERGE_PATCH,
        )

    # namespaces

    async def _ensure_namespace(self, namespace: str, needed_by: str) -> None:
        namespaces = await self._discovery.require("v1", "Namespace", None, "create", "", namespace)
        what = f"Namespace {namespace} (for {needed_by})"
        try:
            await self._api.request("GET", namespaces.path("", namespace), verb="get", what=what)
            return
        except NotFound:
            pass
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        try:
            await self._api.request("POST", namespaces.path(), verb="create", what=what, body=body)
        except ResourceConflict:
            return  # created meanwhile by someone else: just as good
        log.info("platform_namespace_created", namespace=namespace)


def _live_manifest(resource: ApiResource, item: dict[str, Any], cluster: str) -> Manifest:
    # Items of a typed list carry no apiVersion/kind on a real server; the list says them.
    body = {"apiVersion": resource.api_version, "kind": resource.kind, **item}
    metadata = body.get("metadata") or {}
    metadata.pop("managedFields", None)
    return Manifest(
        api_version=resource.api_version,
        kind=resource.kind,
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")) if resource.namespaced else "",
        body=body,
        source="live",
        cluster=cluster,
    )


def _uid(item: dict[str, Any]) -> str:
    uid = (item.get("metadata") or {}).get("uid")
    return uid if isinstance(uid, str) else ""


def _descendants(
    roots: list[tuple[str, str, dict[str, Any]]], candidates: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[str, str, dict[str, Any]]]:
    """The candidates owned, directly or through one another, by one of `roots`."""
    known = {_uid(item) for _, _, item in roots} - {""}
    found: list[tuple[str, str, dict[str, Any]]] = []
    remaining = [c for c in candidates if _uid(c[2]) not in known]
    while True:
        owned = [
            c
            for c in remaining
            if any(
                isinstance(ref, dict) and ref.get("uid") in known
                for ref in (c[2].get("metadata") or {}).get("ownerReferences") or ()
            )
        ]
        if not owned:
            return found
        found += owned
        known |= {_uid(item) for _, _, item in owned} - {""}
        taken = {id(c) for c in owned}
        remaining = [c for c in remaining if id(c) not in taken and _uid(c[2]) not in known]


def _timed_out(status: RolloutStatus, timeout_s: float) -> str:
    parts = [
        f"{status.resource} did not become healthy within {timeout_s:g}s: "
        f"{status.ready} of {status.desired} replicas ready, {status.updated} updated, "
        f"{status.available} available; last seen: {status.message}"
    ]
    if status.condition_message:
        parts.append(f"Progressing: {status.condition_reason}: {status.condition_message}")
    return "; ".join(parts)
