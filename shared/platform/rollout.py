"""Workload rollouts: waiting until one is healthy (or has failed), and scaling one.

`KubernetesPlatform` calls these with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, Final

from opentelemetry import trace

from shared.errors import Forbidden, RolloutFailed
from shared.platform.apiserver import ApiServer
from shared.platform.discovery import Discovery
from shared.platform.resources import RolloutStatus, describe, rollout_status

__all__ = ["scale", "wait_rollout"]

_MERGE_PATCH: Final = "application/merge-patch+json"
_FIRST_POLL_S: Final = 0.05  # a poll's first pause (no watch allowed); doubled up to poll_s
_SLACK_S: Final = 5.0  # beyond timeoutSeconds: the server ends the watch, not the client


async def wait_rollout(
    api: ApiServer,
    discovery: Discovery,
    namespace: str,
    name: str,
    *,
    kind: str = "Deployment",
    timeout_s: float,
    poll_s: float = 0.5,
    seen: dict[str, Any] | None = None,
) -> RolloutStatus:
    """Wait until the workload's rollout is healthy; `RolloutFailed` when its progress
    deadline is exceeded or `timeout_s` passes, saying how many replicas were ready.

    The workload is read once (a missing one raises `NotFound`; one already rolled out
    returns at once), then watched from that version: each change the controllers make
    arrives on one open request instead of a poll each (a quick sync's rollout took
    four or five GETs). Whenever the watch ends (the server's limit, a version too old,
    the object deleted, the deadline) the workload is read again and judged as before.
    A cluster that refuses the watch (RBAC without `watch`) is polled instead, the polls
    `_FIRST_POLL_S` apart and doubling up to `poll_s`. `seen` is the workload as the
    apply that started the rollout returned it: judged and watched from instead of the
    first read (one request fewer per rollout)."""
    resource = await discovery.require("apps/v1", kind, None, "wait for", namespace, name)
    what = describe(kind, namespace, name)
    trace.get_current_span().set_attribute("slipway.k8s.resource", what)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = min(_FIRST_POLL_S, poll_s)
    watchable = True
    while True:
        if seen is not None and seen.get("kind") == kind:
            obj, seen = seen, None  # judged as read: an answer without its kind is read again
        else:
            seen = None
            obj, _ = await api.request(
                "GET", resource.path(namespace, name), verb="wait for", what=what
            )
        status = _judged(obj, what)
        if status.healthy:
            return status
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RolloutFailed(_timed_out(status, timeout_s), resource=what, reason="Timeout")
        if watchable:
            try:
                changed = await _watched(api, resource.path(namespace), name, obj, what, remaining)
            except Forbidden:
                watchable = False  # allowed to read it, not to watch it: poll
            else:
                if changed is not None:
                    return changed
        # A poll's pause, or one after a watch that ended early (so no busy loop).
        if (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, poll_s)


async def _watched(
    api: ApiServer,
    collection: str,
    name: str,
    obj: dict[str, Any],
    what: str,
    remaining_s: float,
) -> RolloutStatus | None:
    """Watch the workload from `obj`'s version until a change makes it healthy (its status)
    or failed (raised); None when the watch ends first, and the caller reads it again."""
    version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    query = [
        ("fieldSelector", f"metadata.name={name}"),
        ("resourceVersion", version),
        ("timeoutSeconds", str(max(1, math.ceil(remaining_s)))),
    ]
    try:
        async with (
            asyncio.timeout(remaining_s),
            contextlib.aclosing(
                api.watch(collection, what=what, query=query, timeout_s=remaining_s + _SLACK_S)
            ) as events,
        ):
            async for kind, changed in events:
                if kind not in ("ADDED", "MODIFIED"):
                    return None  # DELETED, ERROR (410: too old), BOOKMARK: read it again
                status = _judged(changed, what)
                if status.healthy:
                    return status
    except TimeoutError:
        pass  # the deadline: the caller's read says how far the rollout got
    return None


def _judged(obj: dict[str, Any], what: str) -> RolloutStatus:
    """The workload's rollout status; raised as `RolloutFailed` when it has failed."""
    status = rollout_status(obj)
    if status.failed:
        raise RolloutFailed(status.message, resource=what, reason=status.condition_reason, code=0)
    return status


async def scale(
    api: ApiServer,
    discovery: Discovery,
    namespace: str,
    name: str,
    replicas: int,
    *,
    kind: str = "Deployment",
) -> None:
    """Set a workload's replicas through its `scale` subresource, as `kubectl scale` does."""
    resource = await discovery.require("apps/v1", kind, None, "scale", namespace, name)
    await api.request(
        "PATCH",
        resource.path(namespace, name) + "/scale",
        verb="scale",
        what=describe(kind, namespace, name),
        body={"spec": {"replicas": replicas}},
        content_type=_MERGE_PATCH,
    )


# namespaces


def _timed_out(status: RolloutStatus, timeout_s: float) -> str:
    parts = [
        f"{status.resource} did not become healthy within {timeout_s:g}s: "
        f"{status.ready} of {status.desired} replicas ready, {status.updated} updated, "
        f"{status.available} available; last seen: {status.message}"
    ]
    if status.condition_message:
        parts.append(f"Progressing: {status.condition_reason}: {status.condition_message}")
    return "; ".join(parts)
