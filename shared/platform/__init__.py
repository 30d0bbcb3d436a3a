"""Platforms Slipway deploys to; today one, Kubernetes (`KubernetesPlatform`).

The adapter speaks the cluster's REST API; `resources` holds the pure parts
(what Slipway writes on each object, how healthy a rollout is) so the executor
and tests can use them without a cluster. Failures are the `PlatformError`
subtree of `shared.errors`. `livekinds` says which kinds live state lists;
`livetree` turns an application's live objects into the record drift keeps.
"""

from __future__ import annotations

from shared.platform.kubernetes import KubernetesPlatform, Propagation
from shared.platform.livekinds import LiveKinds
from shared.platform.resources import (
    FIELD_MANAGER,
    LABEL_APPLICATION,
    VARIANT_LABEL,
    AppliedResource,
    RolloutStatus,
    parse_key,
    prepare_for_apply,
    rollout_status,
)

__all__ = [
    "FIELD_MANAGER",
    "LABEL_APPLICATION",
    "VARIANT_LABEL",
    "AppliedResource",
    "KubernetesPlatform",
    "LiveKinds",
    "Propagation",
    "RolloutStatus",
    "parse_key",
    "prepare_for_apply",
    "rollout_status",
]
