"""The simulated node: runs every pod, by its images' rules.

A pod is scheduled on the one node (`kubesim`) and `Running` at once, with a
metrics port of its own (`status.podIP` 127.0.0.1, the port in the
`prometheus.io/port` annotation). It turns Ready once the longest readiness
delay of its containers' image rules has passed; an image with `never_ready`
stays unready for good, and one with `crash_loop` also keeps restarting
(`CrashLoopBackOff`, a growing `restartCount`). Deleted pods stop at once:
there is no grace period.

It looks at the pods that changed (`notice`), and again at each pass at those
whose next step is due to the clock: a readiness delay not yet over, a crash
loop (`kubesim.workqueue`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from kubesim.metrics import MetricsHub
from kubesim.resources import ResourceType
from kubesim.rules import ImageRules
from kubesim.store import Change, Obj, Store, now_rfc3339
from kubesim.workqueue import WorkQueue, key_of

NODE_NAME = "kubesim"
POD_IP = "127.0.0.1"
CRASH_PERIOD_S = 3.0


@dataclass
class PodState:
    """What the kubelet tracks about one running pod: start, readiness, crash loop, metrics port."""

    uid: str
    started: float
    started_at: str
    ready_at: float | None  # None: never
    crash_loop: bool
    port: int
    ready_since: float | None = None
    ready_time: str = ""
    restarts: int = 0
    next_crash: float = 0.0


class Kubelet:
    """Runs pods: ready after the image rule's delay, or crash-looping for a bad image."""

    def __init__(
        self, store: Store, pods: ResourceType, rules: ImageRules, metrics: MetricsHub
    ) -> None:
        self.store = store
        self.pods = pods
        self.rules = rules
        self.metrics = metrics
        self._states: dict[str, PodState] = {}
        self.queue = WorkQueue()
        self._gone: list[str] = []  # uids of deleted pods whose state and port are still here

    def notice(self, change: Change) -> None:
        """Queue a pod that changed; a deleted one gives its state and port up at the next pass."""
        if change.key != self.pods.key:
            return
        if change.type == "DELETED":
            self._gone.append(change.obj["metadata"]["uid"])
        else:
            self.queue.add(key_of(change.obj))

    def resync(self) -> None:
        """Queue every pod."""
        for pod in self.store.items(self.pods):
            self.queue.add(key_of(pod))

    def ready_since(self, uid: str) -> float | None:
        """When (monotonic) the pod last became Ready, or None while it is not."""
        state = self._states.get(uid)
        return state.ready_since if state else None

    async def sync(self) -> None:
        """One pass over the queued pods: start new ones, write status changes; forget the
        deleted ones."""
        gone, self._gone = self._gone, []
        for uid in gone:
            if self._states.pop(uid, None) is not None:
                await self.metrics.remove_pod(uid)
        for namespace, name in self.queue.take():
            pod = self.store.peek(self.pods, namespace, name)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                continue
            state = self._states.get(pod["metadata"]["uid"])
            if state is None:
                state = await self._start(pod)
            self._advance(pod, state)
            if state.crash_loop or (state.ready_at is not None and state.ready_since is None):
                self.queue.again((namespace, name))

    async def _start(self, pod: Obj) -> PodState:
        meta = pod["metadata"]
        containers = (pod.get("spec") or {}).get("containers") or []
        rules = [self.rules.for_image(str(c.get("image", ""))) for c in containers]
        never = any(r.never_ready or r.crash_loop for r in rules)
        delay = max((self.rules.ready_delay(r) for r in rules), default=0.0)
        image = str(containers[0].get("image", "")) if containers else ""
        port = await self.metrics.add_pod(
            meta["uid"], meta.get("namespace", ""), meta["name"], image, meta.get("labels") or {}
        )
        now = time.monotonic()
        state = PodState(
            uid=meta["uid"],
            started=now,
            started_at=now_rfc3339(),
            ready_at=None if never else now + delay,
            crash_loop=any(r.crash_loop for r in rules),
            port=port,
            next_crash=now + CRASH_PERIOD_S,
        )
        self._states[state.uid] = state
        self._write(pod, state)
        return state

    def _advance(self, pod: Obj, state: PodState) -> None:
        now = time.monotonic()
        ready = state.ready_at is not None and now >= state.ready_at
        changed = False
        if ready != (state.ready_since is not None):
            state.ready_since = now if ready else None
            state.ready_time = now_rfc3339()
            self.metrics.set_ready(state.uid, ready)
            changed = True
        if state.crash_loop and now >= state.next_crash:
            state.restarts += 1
            state.next_crash = now + CRASH_PERIOD_S
            changed = True
        if changed:
            self._write(pod, state)

    def _write(self, pod: Obj, state: PodState) -> None:
        current = self.store.get(
            self.pods, pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
        )
        if current is None:
            return
        annotations = current["metadata"].setdefault("annotations", {})
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(state.port),
                "prometheus.io/path": "/metrics",
            }
        )
        current.setdefault("spec", {}).setdefault("nodeName", NODE_NAME)
        current["status"] = pod_status(current, state)
        self.store.update(self.pods, current)


def pod_status(pod: Obj, state: PodState) -> dict[str, Any]:
    """The pod's `status` (phase, conditions, container statuses) from what the kubelet tracks."""
    containers = (pod.get("spec") or {}).get("containers") or []
    ready = state.ready_since is not None
    names = [str(c.get("name", "")) for c in containers]
    since = state.ready_time or state.started_at

    def condition(kind: str, ok: bool, when: str) -> dict[str, Any]:
        cond: dict[str, Any] = {
            "type": kind,
            "status": "True" if ok else "False",
            "lastProbeTime": None,
            "lastTransitionTime": when,
        }
        if not ok:
            cond["reason"] = "ContainersNotReady"
            cond["message"] = f"containers with unready status: [{' '.join(names)}]"
        return cond

    statuses = []
    for container in containers:
        name, image = str(container.get("name", "")), str(container.get("image", ""))
        status: dict[str, Any] = {
            "name": name,
            "image": image,
            "imageID": f"{image.split(':')[0]}@sha256:{_digest(image)}",
            "containerID": f"containerd://{_digest(state.uid + name)}",
            "ready": ready,
            "started": True,
            "restartCount": state.restarts,
            "state": {"running": {"startedAt": state.started_at}},
        }
        if state.crash_loop and state.restarts:
            status["started"] = False
            status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container={name}"
                    f" pod={pod['metadata']['name']}",
                }
            }
            status["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": state.started_at,
                    "finishedAt": now_rfc3339(),
                }
            }
        statuses.append(status)
    return {
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", True, state.started_at),
            condition("Initialized", True, state.started_at),
            condition("Ready", ready, since),
            condition("ContainersReady", ready, since),
            condition("PodScheduled", True, state.started_at),
        ],
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": state.started_at,
        "qosClass": "BestEffort",
        "containerStatuses": statuses,
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
