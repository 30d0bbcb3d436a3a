"""Watch: changes to one type streamed as JSON lines, `{"type": …, "object": …}`.

Without a `resourceVersion` (or with "0", or `sendInitialEvents=true`) the
stream starts with an ADDED event for every matching object; from a
resourceVersion it replays the kept history after it, or sends one ERROR
event with a `410 Expired` Status when that history is gone, which tells
client-go to list again. Through a selector, an object that starts or stops
matching is ADDED or DELETED. `allowWatchBookmarks=true` adds a BOOKMARK
every ten seconds (and after the initial events when asked). The stream ends
at `timeoutSeconds`, when the client goes, or when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from kubesim import errors
from kubesim.errors import ApiError
from kubesim.resources import ResourceType
from kubesim.responses import typed
from kubesim.store import Change, Obj, Store
from kubesim.tables import to_table
from kubesim.targets import Target

BOOKMARK_EVERY_S = 10.0


@dataclass(frozen=True)
class WatchRequest:
    """One watch request, with how to filter, render and bookmark for the client that asked."""

    rtype: ResourceType
    namespace: str  # "" for every namespace
    matches: Callable[[Obj], bool]
    render: Callable[[Obj], Obj]  # the object as the client asked for it (version, Table)
    bookmark: Callable[[dict[str, str]], Obj]
    resource_version: str = ""
    send_initial: bool = False
    bookmarks: bool = False
    timeout_s: float = 1800.0


def visible(change: Change, matches: Callable[[Obj], bool]) -> list[tuple[str, Obj]]:
    """How a change looks through a selector: entering is ADDED, leaving is DELETED."""
    now = matches(change.obj)
    before = change.old is not None and matches(change.old)
    if change.type == "ADDED":
        return [("ADDED", change.obj)] if now else []
    if change.type == "DELETED":
        return [("DELETED", change.obj)] if now or before else []
    if now and before:
        return [("MODIFIED", change.obj)]
    if now:
        return [("ADDED", change.obj)]
    if before:
        return [("DELETED", change.obj)]
    return []


def _backlog(store: Store, watch: WatchRequest) -> list[tuple[str, Obj]]:
    if watch.send_initial or watch.resource_version in ("", "0"):
        return [
            ("ADDED", obj)
            for obj in store.objects(watch.rtype, watch.namespace or None)
            if watch.matches(obj)
        ]
    try:
        since = int(watch.resource_version)
    except ValueError as exc:
        raise errors.bad_request(f"invalid resourceVersion {watch.resource_version!r}") from exc
    try:
        changes = store.since(watch.rtype, since)
    except ApiError as exc:
        return [("ERROR", exc.status())]
    return [event for change in changes for event in visible(change, watch.matches)]


async def serve_watch(
    request: web.Request, store: Store, watch: WatchRequest
) -> web.StreamResponse:
    """Serve a watch: the backlog since the requested version, then live changes, as JSON lines."""
    # Subscribing and reading the backlog happen with no await between: no change is missed.
    subscription = store.subscribe(watch.rtype, watch.namespace)
    try:
        backlog = _backlog(store, watch)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(kind: str, obj: Obj) -> None:
            if kind not in ("ERROR", "BOOKMARK"):
                obj = watch.render(obj)
            line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
            await response.write(line.encode())

        # A client that hangs up ends its watch; that is not a server error.
        with contextlib.suppress(ConnectionResetError):
            for kind, obj in backlog:
                await send(kind, obj)
            if any(kind == "ERROR" for kind, _ in backlog):
                return response
            if watch.send_initial and watch.bookmarks:
                await send("BOOKMARK", watch.bookmark({"k8s.io/initial-events-end": "true"}))
            deadline = time.monotonic() + watch.timeout_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    change = await asyncio.wait_for(
                        subscription.queue.get(), min(left, BOOKMARK_EVERY_S)
                    )
                except TimeoutError:
                    if watch.bookmarks and time.monotonic() < deadline:
                        await send("BOOKMARK", watch.bookmark({}))
                    continue
                if change is None:
                    break
                for kind, obj in visible(change, watch.matches):
                    await send(kind, obj)
            await response.write_eof()
        return response
    finally:
        store.unsubscribe(subscription)


def watch_request(
    request: web.Request, target: Target, store: Store, matches: Callable[[Obj], bool]
) -> WatchRequest:
    """The watch a GET with `watch=1` asks for: its start, its bookmarks, how objects look."""
    table = "as=Table" in request.headers.get("Accept", "")
    include = request.query.get("includeObject", "Metadata")

    def render(obj: Obj) -> Obj:
        obj = typed(target, obj)
        if table:
            rv = obj["metadata"]["resourceVersion"]
            return to_table(target.rtype.kind, [obj], resource_version=rv, include=include)
        return obj

    def bookmark(annotations: dict[str, str]) -> Obj:
        meta: Obj = {"resourceVersion": str(store.resource_version)}
        if annotations:
            meta["annotations"] = annotations
        return {
            "kind": target.rtype.kind,
            "apiVersion": target.rtype.api_version(target.version),
            "metadata": meta,
        }

    return WatchRequest(
        rtype=target.rtype,
        namespace=target.namespace,
        matches=matches,
        render=render,
        bookmark=bookmark,
        resource_version=request.query.get("resourceVersion", ""),
        send_initial=truthy(request.query.get("sendInitialEvents")),
        bookmarks=truthy(request.query.get("allowWatchBookmarks")),
        timeout_s=float(request.query.get("timeoutSeconds") or 1800),
    )


def truthy(value: str | None) -> bool:
    """A query flag as client-go sends it: `1` or `true` (any case)."""
    return value is not None and value.lower() in ("1", "true")
