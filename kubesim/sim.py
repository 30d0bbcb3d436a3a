"""`KubeSim`: the API server, the controllers and the node, started and stopped as one.

    async with KubeSim(ready_delay_s=0.2) as sim:
        sim.write_kubeconfig(tmp_path / "kubeconfig")
        ...  # kubectl, kubernetes-asyncio, or plain HTTP against sim.url

One asyncio task reconciles Deployments, ReplicaSets and pods after every
write and at least every `TICK_S` (readiness delays and progress deadlines
are due to the clock, not to a write). Each controller looks only at what the
writes since its last pass concern and at what waits on the clock
(`kubesim.workqueue`), so a pass costs what changed, not the cluster's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog
import yaml
from aiohttp import web

from kubesim.access import ForbiddenRule
from kubesim.admin import AdminApi
from kubesim.api import RestApi
from kubesim.deployments import DeploymentController
from kubesim.kubelet import NODE_NAME, Kubelet
from kubesim.metrics import MetricsHub
from kubesim.namespaces import NamespaceController
from kubesim.replicasets import ReplicaSetController
from kubesim.resources import CustomKind, Registry, ResourceType, type_from_crd
from kubesim.rules import ImageRule, ImageRules
from kubesim.store import Change, Obj, Store, now_rfc3339
from kubesim.workqueue import Watching

# structlog directly, not shared.logs: kubesim stands on its own (no import of Slipway's
# runtime); whoever runs it configures structlog, as `slipway kubesim` does.
log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(__name__)

TICK_S = 0.1
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class KubeSim:
    """A Kubernetes API server emulator on 127.0.0.1; `port=0` picks a free port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rules: Iterable[ImageRule] = (),
        ready_delay_s: float = 1.0,
        seed: int = 0,
        custom_kinds: Iterable[CustomKind] = (),
        forbidden: Iterable[ForbiddenRule] = (),
        server_version: str = "1.32",
        namespace_grace_s: float = 1.0,
        watch_history: int = 50_000,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = Registry.default(custom_kinds)
        self.store = Store(self.registry, history=watch_history)
        self.rules = ImageRules(rules, ready_delay_s=ready_delay_s)
        self.forbidden = list(forbidden)
        self.metrics = MetricsHub(self.rules, seed=seed, host=host)
        self.api = RestApi(
            self.store,
            self.registry,
            self.metrics,
            server_version=server_version,
            forbidden=self.forbidden,
        )
        self.api.hooks.append(self._on_write)
        self.kubelet = Kubelet(self.store, self._type("", "pods"), self.rules, self.metrics)
        self.replicasets = ReplicaSetController(
            self.store,
            self._type("apps", "replicasets"),
            self._type("", "pods"),
            self.kubelet,
            seed=seed,
        )
        self.deployments = DeploymentController(
            self.store, self._type("apps", "deployments"), self._type("apps", "replicasets")
        )
        self.namespaces = NamespaceController(
            self.store, self._type("", "namespaces"), grace_s=namespace_grace_s
        )
        self._dirty = asyncio.Event()
        self.store.listeners.append(self._on_change)
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    def _type(self, group: str, plural: str) -> ResourceType:
        for rtype in self.registry:
            if rtype.key == (group, plural):
                return rtype
        raise KeyError((group, plural))

    @property
    def url(self) -> str:
        """The API server's base URL."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Seed the cluster, then serve the API and run the controllers until `stop`."""
        self._seed_cluster()
        await self.metrics.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.api.add_routes(app)
        AdminApi(self.rules, self.metrics, self.forbidden).add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.api.server_address = f"{self.host}:{self.port}"
        await web.SockSite(self._runner, sock).start()
        self._task = asyncio.create_task(self._reconcile_forever(), name="kubesim-controllers")
        log.info("kubesim_started", url=self.url)
        return self

    async def stop(self) -> None:
        """Stop the controllers, the server and the metrics endpoints."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.store.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.metrics.stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def write_kubeconfig(self, path: Path | str, *, namespace: str = "default") -> Path:
        """A kubeconfig whose current context is this server (plain HTTP, no credentials)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubesim", "cluster": {"server": self.url}}],
            "users": [{"name": "kubesim", "user": {}}],
            "contexts": [
                {
                    "name": "kubesim",
                    "context": {"cluster": "kubesim", "user": "kubesim", "namespace": namespace},
                }
            ],
            "current-context": "kubesim",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def settle(self) -> None:
        """Run the controllers once now over every object (tests use it to avoid waiting for
        the next tick)."""
        for controller in self._controllers:
            controller.resync()
        await self._reconcile()

    # -- internals -------------------------------------------------------

    def _seed_cluster(self) -> None:
        namespaces = self._type("", "namespaces")
        for name in DEFAULT_NAMESPACES:
            if self.store.peek(namespaces, "", name) is None:
                self.store.create(
                    namespaces,
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                        "spec": {"finalizers": ["kubernetes"]},
                        "status": {"phase": "Active"},
                    },
                )
        nodes = self._type("", "nodes")
        if self.store.peek(nodes, "", NODE_NAME) is None:
            self.store.create(nodes, _node())

    @property
    def _controllers(self) -> tuple[Watching, ...]:
        return (self.namespaces, self.deployments, self.replicasets, self.kubelet)

    def _on_change(self, change: Change) -> None:
        """Every committed write: queue what it concerns for each controller, wake them."""
        for controller in self._controllers:
            controller.notice(change)
        self._dirty.set()

    def _on_write(self, rtype: ResourceType, kind: str, obj: Obj) -> None:
        """CustomResourceDefinitions register (or unregister) the kinds they define."""
        if rtype.key != ("apiextensions.k8s.io", "customresourcedefinitions"):
            return
        declared = type_from_crd(obj)
        if declared is None:
            return
        if kind == "DELETED":
            for item in list(self.store.items(declared)):
                meta = item["metadata"]
                self.store.delete(declared, meta.get("namespace", ""), meta["name"])
            self.registry.remove(declared.key)
            return
        self.registry.add(declared)
        established = {
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastTransitionTime": now_rfc3339(),
                }
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
            "acceptedNames": (obj.get("spec") or {}).get("names") or {},
            "storedVersions": [declared.storage_version],
        }
        current = self.store.get(rtype, "", obj["metadata"]["name"])
        if current is not None and current.get("status") != established:
            if (current.get("status") or {}).get("conditions"):
                established["conditions"] = current["status"]["conditions"]
            current["status"] = established
            self.store.update(rtype, current)

    async def _reconcile(self) -> None:
        self.namespaces.sync()
        self.deployments.sync()
        self.replicasets.sync()
        await self.kubelet.sync()

    async def _reconcile_forever(self) -> None:
        while True:
            self._dirty.clear()
            try:
                await self._reconcile()
            except Exception:  # the top of the control loop: log once, keep the cluster running
                log.exception("kubesim_reconcile_failed")
            await asyncio.sleep(0)
            # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancel that arrives as the
            # event is set, and `stop()` then waited for this task forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._dirty.wait()


def _node() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
        },
        "spec": {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "1000"},
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "1000"},
            "nodeInfo": {
                "kubeletVersion": "v1.32.0-kubesim",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "kubesim://1",
                "kernelVersion": "",
                "osImage": "kubesim",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }
