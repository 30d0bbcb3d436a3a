"""The chaos run's stack: every service's replica N reaches the servers through group N's
fault proxies, and what those proxies see of kubesim's and Prometheus's requests.

A fault on a proxy is then a network fault of one "node"; the kubesim and
Prometheus proxies parse the HTTP they carry (`HttpRequests`) so the run knows
which group applied a workload or queried an analysis metric, and when (the
side effects whose overlap `slipway_sandbox.chaos_verdicts` judges).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, unquote_plus, urlsplit

from slipway_sandbox.chaos_plan import GROUPS
from slipway_sandbox.faults import FaultProxy
from slipway_sandbox.stack import Stack

__all__ = [
    "CHAOS_SERVICE_SETTINGS",
    "ChaosStack",
    "HttpRequests",
    "Routes",
    "group_of",
    "kubesim_effect",
    "prometheus_effect",
]

CHAOS_SERVICE_SETTINGS: Final = {
    "SLIPWAY_LOG_LEVEL": "warning",
    "SLIPWAY_EXECUTOR_LEASE_TTL_S": "6",
    "SLIPWAY_DRIFT_INTERVAL_S": "30",
}
_MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OBJECT_PATH: Final = re.compile(
    r"^/(?:api/v1|apis/apps/v1)/namespaces/(?P<ns>[^/]+)/(?:deployments|services)/(?P<name>[^/?]+)"
)
_PROMQL_JOB: Final = re.compile(r'namespace="(?P<ns>[^"]+)",\s*job="(?P<job>[^"]+)"')


# --- HTTP requests seen by a proxy ----------------------------------------------------------


class HttpRequests:
    """Splits what an HTTP/1.1 client sends into requests: `(method, target, body)` each."""

    def __init__(self, on_request: Callable[[str, str, bytes], None]) -> None:
        self._on_request = on_request
        self._buffer = bytearray()
        self._head: tuple[str, str, int] | None = None

    def feed(self, data: bytes) -> None:
        """Take the next bytes the client sent; report every request completed by them."""
        self._buffer += data
        while True:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
                del self._buffer[: end + 4]
                method, target = ([*lines[0].split(" "), "", ""])[:2]
                length = 0
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length" and value.strip().isdigit():
                        length = int(value.strip())
                self._head = (method, target, length)
            method, target, length = self._head
            if len(self._buffer) < length:
                return
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._head = None
            self._on_request(method, target, body)


def kubesim_effect(method: str, target: str, _body: bytes) -> tuple[str, str] | None:
    """(app, "apply") for a mutating request on an app's Deployment or Service."""
    if method not in _MUTATING:
        return None
    match = _OBJECT_PATH.match(urlsplit(target).path)
    if match is None:
        return None
    service = match["name"].removesuffix("-canary")
    return f"{service}-{match['ns']}", "apply"


def prometheus_effect(method: str, target: str, body: bytes) -> tuple[str, str] | None:
    """(app, "analysis") for a Prometheus query naming an app's namespace and service."""
    parts = urlsplit(target)
    if not parts.path.startswith("/api/v1/query"):
        return None
    form = parse_qs(parts.query) | (parse_qs(body.decode("latin-1")) if method == "POST" else {})
    for query in form.get("query", []):
        if match := _PROMQL_JOB.search(unquote_plus(query)):
            return f"{match['job']}-{match['ns']}", "analysis"
    return None


# --- The stack, routed through per-group proxies ------------------------------------------


@dataclass
class Routes:
    """One replica group's proxies and control config."""

    postgres: FaultProxy
    nats: FaultProxy
    kubesim: FaultProxy
    prometheus: FaultProxy
    control: Path | None = None

    def proxy(self, backend: str) -> FaultProxy:
        """The proxy in front of `backend` (postgres, nats, kubesim or prometheus)."""
        proxy: FaultProxy = getattr(self, backend)
        return proxy


@dataclass
class ChaosStack(Stack):
    """A `Stack` whose replica N of each service talks to the servers through `routes[N]`."""

    routes: dict[int, Routes] = field(default_factory=dict)

    def service_env(self, name: str, health_port: int, instance: str) -> dict[str, str]:
        """The replica's environment, with its group's proxies in place of the servers."""
        env = super().service_env(name, health_port, instance)
        assert self.postgres is not None
        group = self.routes[group_of(instance)]
        env["SLIPWAY_DATABASE_URL"] = env["SLIPWAY_DATABASE_URL"].replace(
            f"127.0.0.1:{self.postgres.port}", f"127.0.0.1:{group.postgres.port}"
        )
        env["SLIPWAY_NATS_URL"] = f"nats://127.0.0.1:{group.nats.port}"
        assert group.control is not None
        env["SLIPWAY_CONTROL_CONFIG"] = str(group.control)
        return env


def group_of(instance: str) -> int:
    """`executor-1` → 1: the replica's index, which is its group."""
    return int(instance.rsplit("-", 1)[1]) % len(GROUPS)
