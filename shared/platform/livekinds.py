"""Which kinds live state covers: every kind discovery lists, less PipeCD-style exclusions.

Live state (prune, drift, a canary's clean-up, cascade delete) lists every
kind the API server serves with the `list` verb, namespaced or cluster-scoped,
custom resources included, and keeps the objects labelled for the application.
Settings are PipeCD's `appStateInformer` (kubernetes platform provider):

- `excludeResources`: `{apiVersion, kind}` (no kind: the whole group/version)
  never listed; an exclusion wins over an inclusion, as in PipeCD;
- `includeResources`: listed even when skipped by default;
- `namespace`: list namespaced kinds in this namespace only.

Skipped by default are the kinds controllers write copies of an object's
labels onto (`Endpoints` copies a Service's, `EndpointSlice` too) and
per-event records: Slipway never applies them, and pruning one would fight its
controller. Objects a controller owns (a ReplicaSet of a Deployment, its
pods: `ownerReferences[].controller`) are left out as well, whatever their
kind: they go with their owner.

Pure: `services` build it from the control config, the platform adapter asks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["DEFAULT_SKIPPED", "LiveKinds", "controlled"]

# apiVersion:kind, in PipeCD's matcher key form.
DEFAULT_SKIPPED: Final = frozenset(
    {
        "v1:Event",
        "events.k8s.io/v1:Event",
        "v1:Endpoints",
        "discovery.k8s.io/v1:EndpointSlice",
        "apps/v1:ControllerRevision",
        "coordination.k8s.io/v1:Lease",
    }
)


def _keys(matchers: Iterable[tuple[str, str]]) -> frozenset[str]:
    return frozenset(
        f"{api_version}:{kind}" if kind else api_version for api_version, kind in matchers
    )


@dataclass(frozen=True)
class LiveKinds:
    """The kinds live state lists (PipeCD's resource matcher over "every served kind")."""

    include: frozenset[str] = frozenset()  # "apiVersion" or "apiVersion:Kind"
    exclude: frozenset[str] = frozenset()
    namespace: str = ""  # "" lists every namespace

    @classmethod
    def of(
        cls,
        *,
        include: Iterable[tuple[str, str]] = (),
        exclude: Iterable[tuple[str, str]] = (),
        namespace: str = "",
    ) -> LiveKinds:
        """From (apiVersion, kind) pairs; an empty kind matches the whole apiVersion."""
        return cls(_keys(include), _keys(exclude), namespace)

    def matches(self, api_version: str, kind: str) -> bool:
        """Whether live state lists this kind: excluded never, included always, else unless
        it is one of `DEFAULT_SKIPPED`."""
        key = f"{api_version}:{kind}"
        if api_version in self.exclude or key in self.exclude:
            return False
        if api_version in self.include or key in self.include:
            return True
        return key not in DEFAULT_SKIPPED


def controlled(item: Mapping[str, Any]) -> bool:
    """Whether a controller owns the object (`ownerReferences[].controller`): it is the
    owner's, made by its controller, never applied by Slipway."""
    metadata = item.get("metadata") or {}
    refs = metadata.get("ownerReferences") or ()
    return any(isinstance(ref, Mapping) and ref.get("controller") is True for ref in refs)
