"""Platforms Slipway deploys to; today one, Kubernetes (`KubernetesPlatform`).

An application's clusters together, each object on the provider its
`resourceRoutes` name, are a `RoutedPlatform` (`routed`).

The adapter (`kubernetes`: one cluster's connection) speaks the cluster's REST
API; its jobs are rooms of their own: `applying` (apply, replace, delete),
`livestate` (listing what is live), `rollout` (waiting, scaling), `adoption`,
`discovery`, `apiserver` (requests and errors). `resources` holds the pure parts
(what Slipway writes on each object, how healthy a rollout is) so the executor
and tests can use them without a cluster. Failures are the `PlatformError`
subtree of `shared.errors`. `livekinds` says which kinds live state lists;
`livetree` turns an application's live objects into the record drift keeps.
"""

from __future__ import annotations

from shared.platform.applying import Propagation
from shared.platform.kubernetes import KubernetesPlatform
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
from shared.platform.routed import RoutedPlatform

__all__ = [
    "FIELD_MANAGER",
    "LABEL_APPLICATION",
    "VARIANT_LABEL",
    "AppliedResource",
    "KubernetesPlatform",
    "LiveKinds",
    "Propagation",
    "RolloutStatus",
    "RoutedPlatform",
    "parse_key",
    "prepare_for_apply",
    "rollout_status",
]
