"""The REST API: the real paths, verbs and JSON of a Kubernetes API server.

    /api/v1/[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]
    /apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]

Collections: GET lists (`labelSelector`, `fieldSelector`; `watch=1` streams
`{"type", "object"}` lines from `resourceVersion` until `timeoutSeconds`),
POST creates, DELETE deletes a collection. Objects: GET, PUT (optimistic
concurrency on `metadata.resourceVersion`), PATCH (merge, JSON, strategic
merge, server-side apply) and DELETE (`propagationPolicy`). Subresources:
`status`, `scale` (autoscaling/v1 Scale, what `kubectl scale` patches), and
for pods `log` and `proxy/metrics`. `dryRun=All` validates without storing.
Responses are Tables when kubectl asks for them (`as=Table`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from kubesim import discovery, errors, openapi_v2
from kubesim.access import USER, ForbiddenRule, first_match
from kubesim.apply import record_update, server_side_apply
from kubesim.errors import ApiError
from kubesim.metrics import CONTENT_TYPE, MetricsHub
from kubesim.patches import json_patch, merge_patch, strategic_merge
from kubesim.resources import Registry, ResourceType
from kubesim.selectors import (
    from_label_selector_object,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    to_query,
)
from kubesim.store import Obj, Store
from kubesim.tables import to_table
from kubesim.validation import apply_defaults, validate
from kubesim.watch import WatchRequest, serve_watch

_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_STRATEGIC = "application/strategic-merge-patch+json"
_APPLY = "application/apply-patch+yaml"
_YAML_TYPES = frozenset({_APPLY, "application/yaml", "application/x-yaml", "text/yaml"})
_JSON_TYPES = frozenset({"", "application/json", _MERGE, _JSON_PATCH, _STRATEGIC, "text/plain"})

ResourceHook = Callable[[ResourceType, str, Obj], None]  # (type, change type, object)


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    rtype: ResourceType
    version: str
    namespace: str
    name: str = ""
    sub: str = ""
    rest: str = ""


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


class RestApi:
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
        self.server_address = ""

    def add_routes(self, app: web.Application) -> None:
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

    async def _version(self, request: web.Request) -> web.Response:
        return _json(discovery.version_info(self.server_version))

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _api_versions(self, request: web.Request) -> web.Response:
        return _json(discovery.api_versions(self.server_address))

    async def _api_groups(self, request: web.Request) -> web.Response:
        return _json(discovery.api_group_list(self.registry))

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        if "protobuf" in request.headers.get("Accept", ""):
            return web.Response(
                body=openapi_v2.document_protobuf(self.registry),
                headers={"Content-Type": openapi_v2.PROTOBUF_TYPE},
            )
        return _json(openapi_v2.document_json(self.registry))

    async def _openapi_root(self, request: web.Request) -> web.Response:
        return _json(discovery.openapi_v3_root(self.registry))

    async def _openapi_gv(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return _json(errors.ApiError(404, "NotFound", "no such OpenAPI document").status(), 404)
        if not self.registry.in_group_version(group, version):
            return _json(errors.ApiError(404, "NotFound", "no such OpenAPI document").status(), 404)
        return _json(discovery.openapi_v3_group_version(self.registry, group, version))

    # -- dispatch --------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        legacy = request.path.startswith("/api/")
        segments = [s for s in request.match_info["tail"].split("/") if s]
        if legacy:
            if not segments:
                return _json(discovery.api_versions(self.server_address))
            group, version, rest = "", segments[0], segments[1:]
        else:
            if not segments:
                return _json(discovery.api_group_list(self.registry))
            if len(segments) == 1:
                doc = discovery.api_group(self.registry, segments[0])
                if doc is None:
                    raise _no_route()
                return _json(doc)
            group, version, rest = segments[0], segments[1], segments[2:]
        if not rest:
            doc = discovery.resource_list(self.registry, group, version)
            if doc is None:
                raise _no_route()
            return _json(doc)
        watch = False
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        target = self._target(group, version, rest)
        method = request.method
        collection = not target.name
        if collection:
            if method == "GET":
                if watch or _truthy(request.query.get("watch")):
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
        else:
            raise _no_route()
        handler = handlers.get(method)
        if handler is None:
            raise errors.method_not_allowed()
        if watch:
            raise _no_route()
        return await handler(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        def lookup(plural: str) -> ResourceType:
            rtype = self.registry.by_plural(group, version, plural)
            if rtype is None:
                raise _no_route()
            return rtype

        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.registry.by_plural(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                name = rest[3] if len(rest) > 3 else ""
                sub = rest[4] if len(rest) > 4 else ""
                return Target(candidate, version, rest[1], name, sub, "/".join(rest[5:]))
        rtype = lookup(rest[0])
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if rtype.namespaced and name:
            raise _no_route()
        return Target(rtype, version, "", name, sub, "/".join(rest[3:]))

    def _check(self, verb: str, target: Target) -> None:
        rule = first_match(self.forbidden, verb, target.rtype, target.namespace)
        if rule is not None:
            raise errors.forbidden(
                target.rtype.plural, target.rtype.group, target.name, verb, target.namespace, USER
            )

    # -- output ----------------------------------------------------------

    def _out(self, target: Target, obj: Obj) -> Obj:
        return {
            **obj,
            "apiVersion": target.rtype.api_version(target.version),
            "kind": target.rtype.kind,
        }

    def _respond(
        self, request: web.Request, target: Target, obj: Obj, status: int = 200
    ) -> web.Response:
        obj = self._out(target, obj)
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept and request.method == "GET":
            include = request.query.get("includeObject", "Metadata")
            return _json(
                to_table(
                    target.rtype.kind,
                    [obj],
                    resource_version=obj["metadata"]["resourceVersion"],
                    include=include,
                ),
                status,
            )
        if "as=PartialObjectMetadata" in accept and request.method == "GET":
            return _json(_partial(obj), status)
        return _json(obj, status)

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
            self._out(target, o)
            for o in self.store.objects(target.rtype, target.namespace or None)
            if matches(o)
        ]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        rv = str(self.store.resource_version)
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            include = request.query.get("includeObject", "Metadata")
            return _json(to_table(target.rtype.kind, items, resource_version=rv, include=include))
        if "as=PartialObjectMetadataList" in accept:
            return _json(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": rv},
                    "items": [_partial(o) for o in items],
                }
            )
        return _json(
            {
                "kind": target.rtype.list_kind,
                "apiVersion": target.rtype.api_version(target.version),
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    async def _get(self, request: web.Request, target: Target) -> web.Response:
        self._check("get", target)
        return self._respond(request, target, self._existing(target))

    def _existing(self, target: Target) -> Obj:
        obj = self.store.get(target.rtype, target.namespace, target.name)
        if obj is None:
            raise errors.not_found(target.rtype.plural, target.rtype.group, target.name)
        return obj

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._check("watch", target)
        table = "as=Table" in request.headers.get("Accept", "")
        include = request.query.get("includeObject", "Metadata")

        def render(obj: Obj) -> Obj:
            obj = self._out(target, obj)
            if table:
                rv = obj["metadata"]["resourceVersion"]
                return to_table(target.rtype.kind, [obj], resource_version=rv, include=include)
            return obj

        def bookmark(annotations: dict[str, str]) -> Obj:
            meta: Obj = {"resourceVersion": str(self.store.resource_version)}
            if annotations:
                meta["annotations"] = annotations
            return {
                "kind": target.rtype.kind,
                "apiVersion": target.rtype.api_version(target.version),
                "metadata": meta,
            }

        watch = WatchRequest(
            rtype=target.rtype,
            namespace=target.namespace,
            matches=self._select(request, target),
            render=render,
            bookmark=bookmark,
            resource_version=request.query.get("resourceVersion", ""),
            send_initial=_truthy(request.query.get("sendInitialEvents")),
            bookmarks=_truthy(request.query.get("allowWatchBookmarks")),
            timeout_s=float(request.query.get("timeoutSeconds") or 1800),
        )
        return await serve_watch(request, self.store, watch)

    # -- writes ----------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        ctype = request.content_type.lower()
        raw = await request.read()
        if not raw:
            return None
        try:
            if ctype in _YAML_TYPES:
                return yaml.safe_load(raw)
            if ctype in _JSON_TYPES:
                return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"invalid request body: {exc}") from exc
        raise errors.unsupported_media_type(ctype)

    def _admit(
        self,
        target: Target,
        obj: Obj,
        old: Obj | None,
        request: web.Request,
        *,
        record: bool = True,
    ) -> None:
        """Defaults, validation and managedFields, for every write from a client."""
        rtype = target.rtype
        obj["apiVersion"] = rtype.api_version()
        obj["kind"] = rtype.kind
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            meta["namespace"] = target.namespace
        else:
            meta.pop("namespace", None)
        apply_defaults(rtype, obj)
        validate(rtype, obj, old)
        validation = request.query.get("fieldValidation", "")
        if validation not in ("", "Ignore", "Warn", "Strict"):
            raise errors.bad_request(
                f"fieldValidation {validation!r} is not one of Ignore, Warn, Strict"
            )
        if record:
            record_update(old, obj, _manager(request))

    def _check_identity(self, target: Target, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the request body must be a JSON object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        expected = target.rtype.api_version(target.version)
        if api_version and api_version != expected and api_version != target.rtype.api_version():
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected"
                f" API version ({expected})"
            )
        if kind and kind != target.rtype.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind"
                f" ({target.rtype.kind})"
            )
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        namespace = (meta or {}).get("namespace")
        if target.rtype.namespaced and namespace and namespace != target.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent"
                " on the request"
            )
        name = (meta or {}).get("name")
        if target.name and name and name != target.name:
            raise errors.bad_request(
                f"the name of the object ({name}) does not match the name on the URL"
                f" ({target.name})"
            )

    def _require_namespace(self, target: Target) -> None:
        if not target.rtype.namespaced:
            return
        namespaces = self.registry.by_plural("", "v1", "namespaces")
        assert namespaces is not None
        ns = self.store.peek(namespaces, "", target.namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", target.namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                "Forbidden",
                f"{target.rtype.plural} is forbidden: unable to create new content in namespace"
                f" {target.namespace} because it is being terminated",
            )

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        self._check("create", target)
        obj = await self._body(request)
        self._check_identity(target, obj)
        return self._do_create(request, target, obj)

    def _do_create(
        self, request: web.Request, target: Target, obj: Obj, *, record: bool = True
    ) -> web.Response:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_suffix()}"
        target = Target(target.rtype, target.version, target.namespace, str(meta.get("name", "")))
        self._require_namespace(target)
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
        self._admit(target, obj, None, request, record=record)
        dry_run = bool(request.query.get("dryRun"))
        created = self.store.create(target.rtype, obj, dry_run=dry_run)
        if not dry_run:
            self._notify(target.rtype, "ADDED", created)
        return self._respond(request, target, created, 201)

    async def _replace(self, request: web.Request, target: Target) -> web.Response:
        self._check("update", target)
        obj = await self._body(request)
        self._check_identity(target, obj)
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
        self._admit(target, obj, existing, request, record=record and target.sub != "status")
        dry_run = bool(request.query.get("dryRun"))
        updated = self.store.update(target.rtype, obj, expect_rv=expect_rv, dry_run=dry_run)
        if not dry_run:
            self._notify(target.rtype, "MODIFIED", updated)
        return self._respond(request, target, updated)

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        self._check("patch", target)
        ctype = request.content_type.lower()
        patch = await self._body(request)
        existing = self.store.get(target.rtype, target.namespace, target.name)
        if ctype == _APPLY:
            return self._apply(request, target, patch, existing)
        if existing is None:
            raise errors.not_found(target.rtype.plural, target.rtype.group, target.name)
        if ctype == _MERGE:
            patched = merge_patch(existing, patch)
        elif ctype == _JSON_PATCH:
            patched = json_patch(existing, patch)
        elif ctype == _STRATEGIC:
            if target.rtype.custom:
                raise errors.ApiError(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch is not supported for custom resources;"
                    " use a JSON merge patch",
                )
            if not isinstance(patch, dict):
                raise errors.bad_request("a strategic merge patch must be a JSON object")
            patched = strategic_merge(existing, patch)
        else:
            raise errors.unsupported_media_type(ctype)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        patched.setdefault("metadata", {})
        patched["metadata"]["name"] = target.name
        if target.rtype.namespaced:
            patched["metadata"]["namespace"] = target.namespace
        return self._store_update(request, target, patched, existing)

    def _apply(
        self, request: web.Request, target: Target, applied: Any, existing: Obj | None
    ) -> web.Response:
        """Server-side apply: create or merge, owned by `fieldManager`."""
        self._check_identity(target, applied)
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise errors.bad_request("an applied configuration must set apiVersion and kind")
        manager = request.query.get("fieldManager")
        if not manager:
            raise errors.bad_request("PATCH with apply requires the fieldManager query parameter")
        if target.sub:
            raise errors.unsupported_media_type(_APPLY)
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
        options = await self._body(request) or {}
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
        return self._respond(request, target, deleted)

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
                deleted.append(self._out(target, gone))
        return _json(
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

    def _scale(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        selector = from_label_selector_object((obj.get("spec") or {}).get("selector"))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
            "status": {
                "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                "selector": to_query(selector),
            },
        }

    async def _get_scale(self, request: web.Request, target: Target) -> web.Response:
        self._check("get", target)
        return _json(self._scale(self._existing(target)))

    async def _write_scale(self, request: web.Request, target: Target) -> web.Response:
        self._check("update" if request.method == "PUT" else "patch", target)
        body = await self._body(request)
        existing = self._existing(target)
        scale = self._scale(existing)
        ctype = request.content_type.lower()
        if request.method == "PUT":
            new_scale = body
        elif ctype == _JSON_PATCH:
            new_scale = json_patch(scale, body)
        elif ctype in (_MERGE, _STRATEGIC):
            new_scale = merge_patch(scale, body)
        else:
            raise errors.unsupported_media_type(ctype)
        if not isinstance(new_scale, dict):
            raise errors.bad_request("a Scale must be an object")
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                target.name,
                [
                    errors.Cause(
                        "spec.replicas",
                        f"Invalid value: {replicas}: must be greater than or equal to 0",
                    )
                ],
            )
        expect_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if expect_rv and expect_rv != existing["metadata"]["resourceVersion"]:
            raise errors.stale(target.rtype.plural, target.rtype.group, target.name)
        obj = dict(existing)
        obj["spec"] = {**(existing.get("spec") or {}), "replicas": replicas}
        record_update(existing, obj, _manager(request))
        updated = self.store.update(target.rtype, obj)
        self._notify(target.rtype, "MODIFIED", updated)
        return _json(self._scale(updated))

    async def _log(self, request: web.Request, target: Target) -> web.Response:
        self._check("get", target)
        pod = self._existing(target)
        containers = (pod.get("spec") or {}).get("containers") or []
        wanted = request.query.get("container") or (containers[0]["name"] if containers else "")
        image = next((c.get("image", "") for c in containers if c.get("name") == wanted), "")
        lines = [
            f"kubesim: container {wanted} of pod {target.name} runs {image}",
            f"kubesim: serving simulated traffic; metrics on {pod['status'].get('podIP', '')}"
            f":{(pod['metadata'].get('annotations') or {}).get('prometheus.io/port', '')}/metrics",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _proxy(self, request: web.Request, target: Target) -> web.Response:
        self._check("get", target)
        pod = self._existing(target)
        body = self.metrics.exposition(pod["metadata"]["uid"])
        if target.rest.split(":")[0] not in ("", "metrics") or body is None:
            raise _no_route()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _partial(obj: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def _manager(request: web.Request) -> str:
    if manager := request.query.get("fieldManager"):
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/")[0][:128] or "unknown"


def _suffix() -> str:
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")
