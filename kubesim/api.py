"""The REST API: the real paths, verbs and JSON of a Kubernetes API server.

    /api/v1/[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]
    /apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]

Collections: GET lists (`labelSelector`, `fieldSelector`; `watch=1` streams
`{"type", "object"}` lines from `resourceVersion` until `timeoutSeconds`),
POST creates, DELETE deletes a collection. Objects: GET, PUT (optimistic
concurrency on `metadata.resourceVersion`), PATCH (merge, JSON, strategic
merge, server-side apply) and DELETE (`propagationPolicy`). Subresources:
`status`, `scale` (autoscaling/v1 Scale, what `kubectl scale` patches), and
for pods `log` and `proxy/metrics`, for service accounts `token` (a
TokenRequest, `kubesim.tokens`). `dryRun=All` validates without storing.

This module routes and runs the verbs; what a path names is `targets`, what a
write must pass is `admission`, how answers look (Tables when kubectl asks,
`as=Table`) is `responses`, and the Scale and log subresources `subresources`.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kubesim import discovery, errors, openapi_v2
from kubesim.access import USER, ForbiddenRule, first_match
from kubesim.admission import (
    admit,
    check_identity,
    field_manager,
    read_body,
    require_namespace,
)
from kubesim.apply import record_update, server_side_apply
from kubesim.errors import ApiError
from kubesim.metrics import CONTENT_TYPE, MetricsHub
from kubesim.patches import APPLY_PATCH, patch_object
from kubesim.resources import Registry, ResourceType
from kubesim.responses import json_response, list_response, respond, typed
from kubesim.selectors import labels_match, parse_field_selector, parse_label_selector
from kubesim.store import Obj, Store
from kubesim.subresources import pod_log, requested_replicas, to_scale
from kubesim.targets import Target, no_route, resolve_target
from kubesim.tokens import BOUND_KINDS, BoundObject, TokenIssuer, bound_reference, now_utc
from kubesim.watch import serve_watch, truthy, watch_request

ResourceHook = Callable[[ResourceType, str, Obj], None]  # (type, change type, object)


class RestApi:
    """The Kubernetes REST API: discovery, CRUD, apply, patch, watch, with admission hooks."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        metrics: MetricsHub,
        *,
        server_version: str,
        forbidden: list[ForbiddenRule],
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.server_version = server_version
        self.forbidden = forbidden
        self.hooks: list[ResourceHook] = []
        self.tokens = TokenIssuer()
        self.server_address = ""
        self.requests: Counter[str] = Counter()
        """Resource requests served, by "METHOD path" (tests count a client's calls)."""

    def add_routes(self, app: web.Application) -> None:
        """Register every API route on `app`."""
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        for probe in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(probe, self._ok)
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/api/", self._api_versions)
        app.router.add_get("/apis", self._api_groups)
        app.router.add_get("/apis/", self._api_groups)
        app.router.add_get("/openapi/v2", self._openapi_v2)
        app.router.add_get("/openapi/v3", self._openapi_root)
        app.router.add_get("/openapi/v3/{path:.*}", self._openapi_gv)
        app.router.add_route("*", "/api/{tail:.*}", self._dispatch)
        app.router.add_route("*", "/apis/{tail:.*}", self._dispatch)

    # -- discovery -------------------------------------------------------

    async def _version(self, _request: web.Request) -> web.Response:
        return json_response(discovery.version_info(self.server_version))

    async def _ok(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _api_versions(self, _request: web.Request) -> web.Response:
        return json_response(discovery.api_versions(self.server_address))

    async def _api_groups(self, _request: web.Request) -> web.Response:
        return json_response(discovery.api_group_list(self.registry))

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        if "protobuf" in request.headers.get("Accept", ""):
            return web.Response(
                body=openapi_v2.document_protobuf(self.registry),
                headers={"Content-Type": openapi_v2.PROTOBUF_TYPE},
            )
        return json_response(openapi_v2.document_json(self.registry))

    async def _openapi_root(self, _request: web.Request) -> web.Response:
        return json_response(discovery.openapi_v3_root(self.registry))

    async def _openapi_gv(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return json_response(
                errors.ApiError(404, "NotFound", "no such OpenAPI document").status(), 404
            )
        if not self.registry.in_group_version(group, version):
            return json_response(
                errors.ApiError(404, "NotFound", "no such OpenAPI document").status(), 404
            )
        return json_response(discovery.openapi_v3_group_version(self.registry, group, version))

    # -- dispatch --------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests[f"{request.method} {request.path}"] += 1
        try:
            return await self._route(request)
        except ApiError as exc:
            return json_response(exc.status(), exc.code)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        legacy = request.path.startswith("/api/")
        segments = [s for s in request.match_info["tail"].split("/") if s]
        if legacy:
            if not segments:
                return json_response(discovery.api_versions(self.server_address))
            group, version, rest = "", segments[0], segments[1:]
        else:
            if not segments:
                return json_response(discovery.api_group_list(self.registry))
            if len(segments) == 1:
                doc = discovery.api_group(self.registry, segments[0])
                if doc is None:
                    raise no_route()
                return json_response(doc)
            group, version, rest = segments[0], segments[1], segments[2:]
        if not rest:
            doc = discovery.resource_list(self.registry, group, version)
            if doc is None:
                raise no_route()
            return json_response(doc)
        watch = False
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        target = resolve_target(self.registry, group, version, rest)
        method = request.method
        collection = not target.name
        if collection:
            if method == "GET":
                if watch or truthy(request.query.get("watch")):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise errors.method_not_allowed()
        if target.sub == "":
            handlers = {
                "GET": self._get,
                "PUT": self._replace,
                "PATCH": self._patch,
                "DELETE": self._delete,
            }
        elif target.sub == "status":
            handlers = {"GET": self._get, "PUT": self._replace, "PATCH": self._patch}
        elif target.sub == "scale" and target.rtype.scale_subresource:
            handlers = {
                "GET": self._get_scale,
                "PUT": self._write_scale,
                "PATCH": self._write_scale,
            }
        elif target.sub == "log" and target.rtype.kind == "Pod":
            handlers = {"GET": self._log}
        elif target.sub == "proxy" and target.rtype.kind == "Pod":
            handlers = {"GET": self._proxy}
        elif target.sub == "token" and target.rtype.kind == "ServiceAccount":
            handlers = {"POST": self._create_token}
        else:
            raise no_route()
        handler = handlers.get(method)
        if handler is None:
            raise errors.method_not_allowed()
        if watch:
            raise no_route()
        return await handler(request, target)

    def _check(self, verb: str, target: Target) -> None:
        rule = first_match(self.forbidden, verb, target.rtype, target.namespace)
        if rule is not None:
            raise errors.forbidden(
                target.rtype.plural, target.rtype.group, target.name, verb, target.namespace, USER
            )

    # -- reads -----------------------------------------------------------

    def _select(self, request: web.Request, target: Target) -> Callable[[Obj], bool]:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(request.query.get("fieldSelector", ""))

        def matches(obj: Obj) -> bool:
            if target.namespace and obj["metadata"].get("namespace", "") != target.namespace:
                return False
            return labels_match(labels, obj["metadata"].get("labels")) and fields(obj)

        return matches

    def _list(self, request: web.Request, target: Target) -> web.Response:
        self._check("list", target)
        matches = self._select(request, target)
        items = [
            typed(target, o)
            for o in self.store.objects(target.rtype, target.namespace or None)
            if matches(o)
        ]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return list_response(request, target, items, str(self.store.resource_version))

    async def _get(self, request: web.Request, target: Target) -> web.Response:
        self._check("get", target)
        return respond(request, target, self._existing(target))

    def _existing(self, target: Target) -> Obj:
        obj = self.store.get(target.rtype, target.namespace, target.name)
        if obj is None:
            raise errors.not_found(target.rtype.plural, target.rtype.group, target.name)
        return obj

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._check("watch", target)
        watch = watch_request(request, target, self.store, self._select(request, target))
        return await serve_watch(request, self.store, watch)

    # -- writes ----------------------------------------------------------

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        self._check("create", target)
        obj = await read_body(request)
        check_identity(target, obj)
        return self._do_create(request, target, obj)

    def _do_create(
        self, request: web.Request, target: Target, obj: Obj, *, record: bool = True
    ) -> web.Response:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_suffix()}"
        target = Target(target.rtype, target.version, target.namespace, str(meta.get("name", "")))
        require_namespace(self.store, self.registry, target)
        if target.rtype.status_subresource and target.rtype.kind != "Namespace":
            obj.pop("status", None)
        for system in (
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
        ):
            meta.pop(system, None)
        admit(target, obj, None, request, record=record)
        dry_run = bool(request.query.get("dryRun"))
        created = self.store.create(target.rtype, obj, dry_run=dry_run)
        if not dry_run:
            self._notify(target.rtype, "ADDED", created)
        return respond(request, target, created, 201)

    async def _replace(self, request: web.Request, target: Target) -> web.Response:
        self._check("update", target)
        obj = await read_body(request)
        check_identity(target, obj)
        existing = self._existing(target)
        return self._store_update(request, target, obj, existing)

    def _store_update(
        self, request: web.Request, target: Target, obj: Obj, existing: Obj, *, record: bool = True
    ) -> web.Response:
        obj.setdefault("metadata", {})["name"] = target.name
        if target.sub == "status":
            # The status subresource changes the status and nothing else.
            merged = dict(existing)
            merged["status"] = obj.get("status")
            merged["metadata"] = {
                **existing["metadata"],
                "resourceVersion": obj["metadata"].get("resourceVersion")
                or existing["metadata"]["resourceVersion"],
            }
            obj = merged
        elif target.rtype.status_subresource:
            if "status" in existing:
                obj["status"] = existing["status"]
            else:
                obj.pop("status", None)
        expect_rv = obj["metadata"].get("resourceVersion")
        admit(target, obj, existing, request, record=record and target.sub != "status")
        dry_run = bool(request.query.get("dryRun"))
        updated = self.store.update(target.rtype, obj, expect_rv=expect_rv, dry_run=dry_run)
        if not dry_run:
            self._notify(target.rtype, "MODIFIED", updated)
        return respond(request, target, updated)

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        self._check("patch", target)
        ctype = request.content_type.lower()
        patch = await read_body(request)
        existing = self.store.get(target.rtype, target.namespace, target.name)
        if ctype == APPLY_PATCH:
            return self._apply(request, target, patch, existing)
        if existing is None:
            raise errors.not_found(target.rtype.plural, target.rtype.group, target.name)
        patched = patch_object(existing, patch, ctype, custom=target.rtype.custom)
        patched.setdefault("metadata", {})
        patched["metadata"]["name"] = target.name
        if target.rtype.namespaced:
            patched["metadata"]["namespace"] = target.namespace
        return self._store_update(request, target, patched, existing)

    def _apply(
        self, request: web.Request, target: Target, applied: Any, existing: Obj | None
    ) -> web.Response:
        """Server-side apply: create or merge, owned by `fieldManager`."""
        check_identity(target, applied)
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise errors.bad_request("an applied configuration must set apiVersion and kind")
        manager = request.query.get("fieldManager")
        if not manager:
            raise errors.bad_request("PATCH with apply requires the fieldManager query parameter")
        if target.sub:
            raise errors.unsupported_media_type(APPLY_PATCH)
        applied.setdefault("metadata", {})["name"] = target.name
        if target.rtype.namespaced:
            applied["metadata"]["namespace"] = target.namespace
        result = server_side_apply(existing, applied, manager)
        if existing is None:
            return self._do_create(request, target, result, record=False)
        result["metadata"]["resourceVersion"] = (
            applied["metadata"].get("resourceVersion") or existing["metadata"]["resourceVersion"]
        )
        return self._store_update(request, target, result, existing, record=False)

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        self._check("delete", target)
        options = await read_body(request) or {}
        if not isinstance(options, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        propagation = request.query.get("propagationPolicy") or options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            propagation = "Orphan"
        dry_run = bool(request.query.get("dryRun") or options.get("dryRun"))
        deleted = self.store.delete(
            target.rtype,
            target.namespace,
            target.name,
            propagation=propagation or "Background",
            preconditions=options.get("preconditions"),
            dry_run=dry_run,
        )
        if not dry_run:
            self._notify(target.rtype, "DELETED", deleted)
        return respond(request, target, deleted)

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        self._check("deletecollection", target)
        matches = self._select(request, target)
        deleted = []
        for obj in self.store.objects(target.rtype, target.namespace or None):
            if matches(obj) and self.store.peek(
                target.rtype, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
            ):
                gone = self.store.delete(
                    target.rtype, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
                )
                self._notify(target.rtype, "DELETED", gone)
                deleted.append(typed(target, gone))
        return json_response(
            {
                "kind": target.rtype.list_kind,
                "apiVersion": target.rtype.api_version(target.version),
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            }
        )

    def _notify(self, rtype: ResourceType, kind: str, obj: Obj) -> None:
        for hook in self.hooks:
            hook(rtype, kind, obj)

    # -- subresources ----------------------------------------------------

    # The subresource handlers' one signature (request, target); this one needs no request.
    async def _get_scale(self, request: web.Request, target: Target) -> web.Response:  # noqa: ARG002
        self._check("get", target)
        return json_response(to_scale(self._existing(target)))

    async def _write_scale(self, request: web.Request, target: Target) -> web.Response:
        self._check("update" if request.method == "PUT" else "patch", target)
        body = await read_body(request)
        existing = self._existing(target)
        ctype = request.content_type.lower()
        replicas = requested_replicas(target, existing, request.method, ctype, body)
        obj = dict(existing)
        obj["spec"] = {**(existing.get("spec") or {}), "replicas": replicas}
        record_update(existing, obj, field_manager(request))
        updated = self.store.update(target.rtype, obj)
        self._notify(target.rtype, "MODIFIED", updated)
        return json_response(to_scale(updated))

    async def _log(self, request: web.Request, target: Target) -> web.Response:
        self._check("get", target)
        text = pod_log(self._existing(target), target.name, request.query.get("container"))
        return web.Response(text=text, content_type="text/plain")

    # The subresource handlers' one signature (request, target); this one needs no request.
    async def _proxy(self, request: web.Request, target: Target) -> web.Response:  # noqa: ARG002
        self._check("get", target)
        pod = self._existing(target)
        body = self.metrics.exposition(pod["metadata"]["uid"])
        if target.rest.split(":")[0] not in ("", "metrics") or body is None:
            raise no_route()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _create_token(self, request: web.Request, target: Target) -> web.Response:
        self._check("create", target)
        body = await read_body(request)
        service_account = self._existing(target)
        bound = self._bound_object(body, target.namespace)
        answer = self.tokens.token_request(service_account, body, now_utc(), bound)
        return json_response(answer, 201)

    def _bound_object(self, body: object, namespace: str) -> BoundObject | None:
        """The Pod, Secret or Node a TokenRequest binds its token to: it must exist, with the
        uid the request names (a recreated object is another object)."""
        ref = bound_reference(body)
        if ref is None:
            return None
        plural, namespaced = BOUND_KINDS[ref["kind"]]
        rtype = self.registry.by_plural("", "v1", plural)
        if rtype is None:  # the core kinds are always served
            raise no_route()
        obj = self.store.get(rtype, namespace if namespaced else "", ref["name"])
        if obj is None:
            raise errors.not_found(plural, "", ref["name"])
        uid = ref.get("uid")
        if uid and uid != obj["metadata"].get("uid"):
            raise errors.conflict(
                plural,
                "",
                ref["name"],
                f"the UID in the bound object reference ({uid}) does not match the UID in"
                " record. The object might have been deleted and then recreated",
            )
        return ref["kind"], obj


def _suffix() -> str:
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
