"""Workload rollouts: waiting until one is healthy (or has failed), and scaling one.

`KubernetesPlatform` calls these with its connection.
"""

from __future__ import annotations

import asyncio
from typing import Final

from opentelemetry import trace

from shared.errors import RolloutFailed
from shared.platform.apiserver import ApiServer
from shared.platform.discovery import Discovery
from shared.platform.resources import RolloutStatus, describe, rollout_status

__all__ = ["scale", "wait_rollout"]

_MERGE_PATCH: Final = "application/merge-patch+json"
_FIRST_POLL_S: Final = 0.05  # wait_rollout's first pause; doubled up to its poll_s


async def wait_rollout(
    api: ApiServer,
    discovery: Discovery,
    namespace: str,
    name: str,
    *,
    kind: str = "Deployment",
    timeout_s: float,
    poll_s: float = 0.5,
) -> RolloutStatus:
    """Poll the workload until its rollout is healthy; `RolloutFailed` when its progress
    deadline is exceeded or `timeout_s` passes, saying how many replicas were ready.

    The polls start `_FIRST_POLL_S` apart and double up to `poll_s`: a rollout that
    needs nothing new (an unchanged or already-ready workload) is seen done within
    milliseconds instead of a whole `poll_s`, which bounded a quick sync's latency."""
    resource = await discovery.require("apps/v1", kind, None, "wait for", namespace, name)
    what = describe(kind, namespace, name)
    trace.get_current_span().set_attribute("slipway.k8s.resource", what)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = min(_FIRST_POLL_S, poll_s)
    while True:
        obj, _ = await api.request(
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
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_s)


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
