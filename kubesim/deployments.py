"""The Deployment controller, after kube-controller-manager's.

The pod template's hash names its ReplicaSet (`<name>-<hash>`, label
`pod-template-hash`, revision annotations). A rolling update scales the new
ReplicaSet up within `maxSurge` and old ones down while at least
`replicas - maxUnavailable` pods stay available; `Recreate` empties the old
ones first. The status is what `kubectl rollout status` reads —
`observedGeneration`, `updatedReplicas`, `availableReplicas` — and the
conditions: `Available` (MinimumReplicasAvailable) and `Progressing`, whose
reason ends as `NewReplicaSetAvailable`, or `ProgressDeadlineExceeded` once no
progress was made for `spec.progressDeadlineSeconds`.

It reconciles the Deployments that changed or whose ReplicaSets did
(`notice`), and looks again at each pass at those still rolling out, for the
progress deadline (`kubesim.workqueue`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from kubesim.replicasets import NAME_ALPHABET, owned_by, owner_ref
from kubesim.resources import ResourceType
from kubesim.store import Change, Obj, Store, json_copy, now_rfc3339
from kubesim.workqueue import WorkQueue, key_of, owners

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: Obj) -> str:
    """A stable name for a pod template; templates that differ only by nulls and empties agree.

    Kubernetes hashes the decoded struct, where `creationTimestamp: null` or
    `resources: {}` are the zero value, as absent; `kubectl rollout undo`
    sends such a template back, and it must map to the same ReplicaSet.
    """
    digest = hashlib.sha256(json.dumps(_normal(template), sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        items = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _resolve(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent field (`maxSurge: 25%`) against a replica count."""
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


class DeploymentController:
    """Drives every Deployment's ReplicaSets toward its spec and writes its status."""

    def __init__(self, store: Store, deployments: ResourceType, replicasets: ResourceType) -> None:
        self.store = store
        self.deployments = deployments
        self.replicasets = replicasets
        self._progress_at: dict[str, float] = {}  # uid → monotonic time of the last progress
        self.queue = WorkQueue()

    def notice(self, change: Change) -> None:
        """Queue what a committed write concerns: a Deployment, or the owner of a ReplicaSet."""
        if change.key == self.deployments.key:
            if change.type == "DELETED":
                self._progress_at.pop(change.obj["metadata"]["uid"], None)
            self.queue.add(key_of(change.obj))
        elif change.key == self.replicasets.key:
            for key in owners(change, "Deployment"):
                self.queue.add(key)

    def resync(self) -> None:
        """Queue every Deployment."""
        for deployment in self.store.items(self.deployments):
            self.queue.add(key_of(deployment))

    def sync(self) -> None:
        """One pass over the queued Deployments; True from `_sync` queues one again."""
        for namespace, name in self.queue.take():
            deployment = self.store.peek(self.deployments, namespace, name)
            if deployment is None:
                continue
            if deployment["metadata"].get("deletionTimestamp"):
                self._progress_at.pop(deployment["metadata"]["uid"], None)
                continue
            if self._sync(deployment):
                self.queue.again((namespace, name))

    def _replica_sets(self, d: Obj) -> list[Obj]:
        uid = d["metadata"]["uid"]
        owned = [
            rs
            for rs in self.store.items(self.replicasets, d["metadata"]["namespace"])
            if owned_by(rs, uid)
        ]
        return sorted(owned, key=lambda rs: (_revision(rs), rs["metadata"]["creationTimestamp"]))

    def _sync(self, d: Obj) -> bool:
        """Reconcile one Deployment; True while it is rolling out (the clock matters)."""
        spec = d["spec"]
        desired = int(spec.get("replicas", 1))
        template_hash_ = template_hash(spec.get("template") or {})
        rsets = self._replica_sets(d)
        new_rs = next(
            (
                rs
                for rs in rsets
                if rs["metadata"].get("labels", {}).get(HASH_LABEL) == template_hash_
            ),
            None,
        )
        created = False
        if new_rs is None and not spec.get("paused"):
            new_rs = self._create_rs(d, template_hash_, rsets)
            created = True
            rsets = self._replica_sets(d)
        elif (
            new_rs is not None and rsets and _revision(new_rs) < max(_revision(rs) for rs in rsets)
        ):
            # A rollback to an old template reuses its ReplicaSet, as the newest revision.
            new_rs = self._set_rs(new_rs, revision=max(_revision(rs) for rs in rsets) + 1)
            rsets = self._replica_sets(d)
        old = [
            rs
            for rs in rsets
            if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        surge = _resolve(rolling.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = _resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        if strategy.get("type") == "Recreate":
            surge, unavailable = 0, desired
        if new_rs is not None and not spec.get("paused"):
            if strategy.get("type") == "Recreate":
                self._recreate(new_rs, old, desired)
            else:
                self._roll(new_rs, old, desired, surge, unavailable)
            self._clean_history(d, old)
        return self._write_status(d, new_rs, created, desired, unavailable)

    def _create_rs(self, d: Obj, hash_: str, existing: list[Obj]) -> Obj:
        spec = d["spec"]
        template = json_copy(spec.get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: hash_}
        selector = json_copy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: hash_}
        revision = max((_revision(rs) for rs in existing), default=0) + 1
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{d['metadata']['name']}-{hash_}",
                "namespace": d["metadata"]["namespace"],
                "labels": dict(tmeta["labels"]),
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1)),
                    REVISION: str(revision),
                },
                "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        if spec.get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        self._progress_at[d["metadata"]["uid"]] = time.monotonic()
        return self.store.create(self.replicasets, rs)

    def _set_rs(self, rs: Obj, *, replicas: int | None = None, revision: int | None = None) -> Obj:
        updated = json_copy(rs)
        if replicas is not None:
            updated["spec"]["replicas"] = replicas
        if revision is not None:
            updated["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        return self.store.update(self.replicasets, updated)

    def _recreate(self, new_rs: Obj, old: list[Obj], desired: int) -> None:
        for rs in old:
            if rs["spec"].get("replicas", 0):
                self._set_rs(rs, replicas=0)
        old_gone = all(not rs.get("status", {}).get("replicas") for rs in old)
        if old_gone and new_rs["spec"].get("replicas") != desired:
            self._set_rs(new_rs, replicas=desired)

    def _roll(
        self, new_rs: Obj, old: list[Obj], desired: int, surge: int, unavailable: int
    ) -> None:
        new_count = int(new_rs["spec"].get("replicas", 0))
        all_rs = [new_rs, *old]
        total = sum(int(rs["spec"].get("replicas", 0)) for rs in all_rs)
        if new_count > desired:
            self._set_rs(new_rs, replicas=desired)
            new_count = desired
        elif new_count < desired and total < desired + surge:
            new_count = min(desired, new_count + desired + surge - total)
            new_rs = self._set_rs(new_rs, replicas=new_count)
        active_old = [rs for rs in old if rs["spec"].get("replicas", 0)]
        if not active_old:
            return
        min_available = desired - unavailable
        total = new_count + sum(int(rs["spec"]["replicas"]) for rs in active_old)
        new_unavailable = new_count - int((new_rs.get("status") or {}).get("availableReplicas", 0))
        budget = total - min_available - new_unavailable
        # Unhealthy old pods go first: removing them costs no availability.
        for rs in active_old:
            if budget <= 0:
                break
            replicas = int(rs["spec"]["replicas"])
            unhealthy = replicas - int((rs.get("status") or {}).get("availableReplicas", 0))
            cut = min(budget, max(unhealthy, 0))
            if cut:
                self._set_rs(rs, replicas=replicas - cut)
                budget -= cut
        refreshed = [
            self.store.peek(self.replicasets, rs["metadata"]["namespace"], rs["metadata"]["name"])
            for rs in active_old
        ]
        old_now = [rs for rs in refreshed if rs is not None and rs["spec"].get("replicas", 0)]
        available = sum(
            int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in [new_rs, *old_now]
        )
        budget = available - min_available
        for rs in old_now:
            if budget <= 0:
                break
            replicas = int(rs["spec"]["replicas"])
            cut = min(budget, replicas)
            self._set_rs(rs, replicas=replicas - cut)
            budget -= cut

    def _clean_history(self, d: Obj, old: list[Obj]) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in old
            if not rs["spec"].get("replicas") and not (rs.get("status") or {}).get("replicas")
        ]
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.store.delete(self.replicasets, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _write_status(
        self, d: Obj, new_rs: Obj | None, created: bool, desired: int, max_unavailable: int
    ) -> bool:
        """Write the status; True while the rollout is neither complete nor paused."""
        uid = d["metadata"]["uid"]
        rsets = self._replica_sets(d)
        new_rs = next(
            (rs for rs in rsets if new_rs and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]),
            None,
        )

        def count(rs: Obj | None, field: str) -> int:
            return int(((rs or {}).get("status") or {}).get(field, 0))

        replicas = sum(count(rs, "replicas") for rs in rsets)
        updated = count(new_rs, "replicas")
        ready = sum(count(rs, "readyReplicas") for rs in rsets)
        available = sum(count(rs, "availableReplicas") for rs in rsets)
        unavailable = max(sum(int(rs["spec"].get("replicas", 0)) for rs in rsets) - available, 0)
        old_status = d.get("status") or {}
        status: dict[str, Any] = {"observedGeneration": d["metadata"]["generation"]}
        # Zero counts are omitted, as the real API's `omitempty` does.
        for field, value in (
            ("replicas", replicas),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", unavailable),
        ):
            if value:
                status[field] = value
        conditions = {c["type"]: c for c in json_copy(old_status.get("conditions") or [])}
        if available >= desired - max_unavailable:
            _set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            _set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        old_replicas = replicas - updated
        old_status_old = int(old_status.get("replicas", 0)) - int(
            old_status.get("updatedReplicas", 0)
        )
        complete = updated == desired and replicas == desired and available == desired
        progressing = (
            updated > int(old_status.get("updatedReplicas", 0))
            or old_replicas < old_status_old
            or ready > int(old_status.get("readyReplicas", 0))
            or available > int(old_status.get("availableReplicas", 0))
        )
        deadline = d["spec"].get("progressDeadlineSeconds")
        if d["spec"].get("paused"):
            _set_condition(
                conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif created:
            _set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{rs_name}"',
                force=True,
            )
            self._progress_at[uid] = time.monotonic()
        elif complete and new_rs is not None:
            _set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif progressing:
            _set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                force=True,
            )
            self._progress_at[uid] = time.monotonic()
        elif deadline is not None and new_rs is not None:
            cond = conditions.get("Progressing")
            since = self._progress_at.setdefault(uid, time.monotonic())
            if (
                cond is not None
                and cond.get("reason") not in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded")
                and time.monotonic() - since > float(deadline)
            ):
                _set_condition(
                    conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                )
        status["conditions"] = [
            conditions[t] for t in ("Available", "Progressing") if t in conditions
        ]
        if status != old_status:
            fresh = json_copy(d)
            fresh["status"] = status
            self.store.update(self.deployments, fresh)
        return not complete and not d["spec"].get("paused")


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _set_condition(
    conditions: dict[str, dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    force: bool = False,
) -> None:
    """Set a condition; an unchanged status and reason keeps its times unless `force`."""
    current = conditions.get(kind)
    if (
        current
        and current.get("status") == status
        and current.get("reason") == reason
        and not force
    ):
        return
    now = now_rfc3339()
    transition = (
        current["lastTransitionTime"] if current and current.get("status") == status else now
    )
    if (
        current
        and current.get("status") == status
        and current.get("reason") == reason
        and current.get("message") == message
        and force
    ):
        # Progress on the same ReplicaSet only moves lastUpdateTime.
        conditions[kind] = {**current, "lastUpdateTime": now}
        return
    conditions[kind] = {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
