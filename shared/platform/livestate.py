"""Reading what is live in a cluster: the objects of the live kinds, an application's
labelled objects, and its tree down to what their controllers made.

Live state lists every kind discovery serves (custom resources too), filtered
by `livekinds.LiveKinds` (PipeCD's `appStateInformer`), for the objects
labelled `slipway.dev/application`; what a controller owns is left out of
`live_resources` and followed through ownerReferences by `live_tree`. Both take
the `labelled` listing when the caller has it already (the drift service reads
it once a round and derives both), else list it themselves.
`KubernetesPlatform` calls these with its connection and settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from shared.config.manifests import Manifest
from shared.platform.apiserver import ApiServer
from shared.platform.discovery import ApiResource, Discovery
from shared.platform.livekinds import LiveKinds, controlled
from shared.platform.resources import LABEL_APPLICATION

__all__ = ["Labelled", "labelled", "list_objects", "live_resources", "live_tree"]

Labelled = list[tuple[ApiResource, dict[str, Any]]]
"""An application's labelled objects as listed (`labelled`), controlled ones included."""

_LIST_CONCURRENCY: Final = 8
# What controllers make for an application's objects (never labelled for it): the live
# tree follows ownerReferences down to them, in the namespaces of its objects only.
_OWNED_KINDS: Final = (("apps", "ReplicaSet"), ("", "Pod"), ("batch", "Job"))
_MAX_TREE_NAMESPACES: Final = 20


async def labelled(
    api: ApiServer,
    discovery: Discovery,
    live_kinds: LiveKinds,
    application_id: str,
    *,
    max_age_s: float,
) -> Labelled:
    """Every object of the live kinds labelled `slipway.dev/application=<id>`: one list
    request per kind, what `live_resources` and `live_tree` both start from."""
    selector = f"{LABEL_APPLICATION}={application_id}"
    return await list_objects(
        api, discovery, live_kinds, max_age_s=max_age_s, label_selector=selector
    )


async def live_resources(
    api: ApiServer,
    discovery: Discovery,
    live_kinds: LiveKinds,
    application_id: str,
    *,
    max_age_s: float,
    cluster: str,
    kinds: Iterable[tuple[str, str]] | None = None,
    listed: Labelled | None = None,
) -> list[Manifest]:
    """Every object labelled `slipway.dev/application=<id>`, of every kind live state covers
    (`live_kinds`), or of `kinds` (group, kind) only; what a controller owns is left out.
    From `listed` (what `labelled` read) when given, without asking the cluster again.

    Sorted by key, `managedFields` dropped; kinds the cluster does not serve are skipped.
    """
    if listed is not None and kinds is None:
        found = listed
    else:
        selector = f"{LABEL_APPLICATION}={application_id}"
        found = await list_objects(
            api, discovery, live_kinds, max_age_s=max_age_s, label_selector=selector, kinds=kinds
        )
    return sorted(
        (
            _live_manifest(resource, item, cluster)
            for resource, item in found
            if not controlled(item)
        ),
        key=lambda m: m.key,
    )


async def live_tree(
    api: ApiServer,
    discovery: Discovery,
    live_kinds: LiveKinds,
    application_id: str,
    *,
    max_age_s: float,
    listed: Labelled | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """(apiVersion, kind, object) of every object labelled for the application (`listed`
    when given, else listed now), and of the ReplicaSets, Pods and Jobs they own (through
    ownerReferences, at any depth), for `livetree.observe`. Only the namespaces of the
    labelled objects are listed (at most `_MAX_TREE_NAMESPACES` of them), each kind once
    per namespace."""
    if listed is None:
        listed = await labelled(api, discovery, live_kinds, application_id, max_age_s=max_age_s)
    found = [(r.api_version, r.kind, item) for r, item in listed]
    namespaces = sorted(
        {
            ns
            for r, item in listed
            if r.namespaced and (ns := str((item.get("metadata") or {}).get("namespace", "")))
        }
    )[:_MAX_TREE_NAMESPACES]
    if live_kinds.namespace:
        namespaces = [ns for ns in namespaces if ns == live_kinds.namespace]
    owned_kinds = await _resources(discovery, live_kinds, _OWNED_KINDS, max_age_s)
    limit = asyncio.Semaphore(_LIST_CONCURRENCY)

    async def in_namespace(resource: ApiResource, namespace: str) -> list[tuple[str, str, Any]]:
        async with limit:
            answer, _ = await api.request(
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
    lists = (in_namespace(r, ns) for r in owned_kinds for ns in namespaces)
    for batch in await asyncio.gather(*lists):
        candidates += batch
    return found + _descendants(found, candidates)


async def list_objects(
    api: ApiServer,
    discovery: Discovery,
    live_kinds: LiveKinds,
    *,
    max_age_s: float,
    label_selector: str = "",
    kinds: Iterable[tuple[str, str]] | None = None,
) -> list[tuple[ApiResource, dict[str, Any]]]:
    """(kind, object) of every object of the live kinds (or `kinds`) matching the selector,
    in `live_kinds.namespace` when set; objects keep their `managedFields`."""
    resources = await _resources(discovery, live_kinds, kinds, max_age_s)
    limit = asyncio.Semaphore(_LIST_CONCURRENCY)
    query = [("labelSelector", label_selector)] if label_selector else []

    async def listed(resource: ApiResource) -> list[tuple[ApiResource, dict[str, Any]]]:
        async with limit:
            answer, _ = await api.request(
                "GET",
                resource.path(live_kinds.namespace),
                verb="list",
                what=f"{resource.kind} labelled {label_selector or '(any)'}",
                query=query,
            )
        return [(resource, item) for item in answer.get("items") or () if item]

    found: list[tuple[ApiResource, dict[str, Any]]] = []
    for batch in await asyncio.gather(*(listed(r) for r in resources)):
        found += batch
    return found


async def _resources(
    discovery: Discovery,
    live_kinds: LiveKinds,
    kinds: Iterable[tuple[str, str]] | None,
    max_age_s: float,
) -> list[ApiResource]:
    if kinds is None:
        served = await discovery.listable_kinds(max_age_s)
        return [r for r in served if live_kinds.matches(r.api_version, r.kind)]
    resources = []
    for group, kind in dict.fromkeys(kinds):
        version = await discovery.preferred_version(group)
        resource = await discovery.lookup(group, version, kind) if version else None
        if resource is not None:
            resources.append(resource)
    return resources


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
