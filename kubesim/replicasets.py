"""The ReplicaSet controller: keeps `spec.replicas` pods, after kube-controller-manager's.

Pods are named `<rs>-<5 chars>` and owned by their ReplicaSet; scaling down
deletes unready pods first, then the most recently started. A pod counts as
available once it has been Ready for the ReplicaSet's `minReadySeconds`.

It reconciles the ReplicaSets that changed or whose pods did (`notice`), and
looks again at each pass at those with pods Ready but not yet available
(`kubesim.workqueue`).
"""

from __future__ import annotations

import random
import time
from typing import Any

from kubesim.kubelet import NODE_NAME, Kubelet
from kubesim.resources import ResourceType
from kubesim.store import Change, Obj, Store, json_copy
from kubesim.validation import apply_defaults
from kubesim.workqueue import WorkQueue, key_of, owners

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet


def owned_by(obj: Obj, uid: str) -> bool:
    """Whether `obj` has an owner reference to `uid`."""
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def owner_ref(owner: Obj, api_version: str, kind: str) -> dict[str, Any]:
    """A controller owner reference to `owner`, as the built-in controllers write them."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class ReplicaSetController:
    """Keeps each ReplicaSet's pod count at its replicas and writes its status."""

    def __init__(
        self,
        store: Store,
        replicasets: ResourceType,
        pods: ResourceType,
        kubelet: Kubelet,
        *,
        seed: int,
    ) -> None:
        self.store = store
        self.replicasets = replicasets
        self.pods = pods
        self.kubelet = kubelet
        self._rng = random.Random(seed)  # noqa: S311 — repeatable names, not secrets
        self.queue = WorkQueue()

    def notice(self, change: Change) -> None:
        """Queue what a committed write concerns: a ReplicaSet, or the owner of a pod."""
        if change.key == self.replicasets.key:
            self.queue.add(key_of(change.obj))
        elif change.key == self.pods.key:
            for key in owners(change, "ReplicaSet"):
                self.queue.add(key)

    def resync(self) -> None:
        """Queue every ReplicaSet."""
        for rs in self.store.items(self.replicasets):
            self.queue.add(key_of(rs))

    def sync(self) -> None:
        """One pass over the queued ReplicaSets that are not being deleted."""
        for namespace, name in self.queue.take():
            rs = self.store.peek(self.replicasets, namespace, name)
            if rs is not None and not rs["metadata"].get("deletionTimestamp") and self._sync(rs):
                self.queue.again((namespace, name))

    def _pods_of(self, rs: Obj) -> list[Obj]:
        uid = rs["metadata"]["uid"]
        return [
            p
            for p in self.store.items(self.pods, rs["metadata"]["namespace"])
            if owned_by(p, uid) and not p["metadata"].get("deletionTimestamp")
        ]

    def _sync(self, rs: Obj) -> bool:
        """Reconcile one ReplicaSet; True while a Ready pod waits out `minReadySeconds`."""
        pods = self._pods_of(rs)
        want = int(rs["spec"].get("replicas", 1))
        if len(pods) < want:
            for _ in range(want - len(pods)):
                self._create_pod(rs)
        elif len(pods) > want:
            # Unready pods go first, then the most recently started (sorts are stable).
            doomed = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
            doomed.sort(key=self._ready)
            for pod in doomed[: len(pods) - want]:
                self.store.delete(self.pods, pod["metadata"]["namespace"], pod["metadata"]["name"])
        pods = self._pods_of(rs)
        min_ready = float(rs["spec"].get("minReadySeconds", 0) or 0)
        ready = [p for p in pods if self._ready(p)]
        available = [p for p in ready if self._available(p, min_ready)]
        status: dict[str, Any] = {"replicas": len(pods)}
        if pods:
            status["fullyLabeledReplicas"] = len(pods)
        if ready:
            status["readyReplicas"] = len(ready)
        if available:
            status["availableReplicas"] = len(available)
        status["observedGeneration"] = rs["metadata"]["generation"]
        if rs.get("status") != status:
            updated = json_copy(rs)
            updated["status"] = status
            self.store.update(self.replicasets, updated)
        return len(available) < len(ready)

    def _ready(self, pod: Obj) -> bool:
        return self.kubelet.ready_since(pod["metadata"]["uid"]) is not None

    def _available(self, pod: Obj, min_ready_s: float) -> bool:
        since = self.kubelet.ready_since(pod["metadata"]["uid"])
        return since is not None and time.monotonic() - since >= min_ready_s

    def _create_pod(self, rs: Obj) -> None:
        template = rs["spec"].get("template") or {}
        tmeta = template.get("metadata") or {}
        name = f"{rs['metadata']['name']}-{''.join(self._rng.choices(NAME_ALPHABET, k=5))}"
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": f"{rs['metadata']['name']}-",
                "namespace": rs["metadata"]["namespace"],
                "labels": dict(tmeta.get("labels") or {}),
                "ownerReferences": [owner_ref(rs, "apps/v1", "ReplicaSet")],
            },
            "spec": json_copy(template.get("spec") or {}),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        pod["spec"].setdefault("nodeName", NODE_NAME)
        apply_defaults(self.pods, pod)
        if self.store.peek(self.pods, pod["metadata"]["namespace"], name) is None:
            self.store.create(self.pods, pod)
