"""An application's clusters as one platform: each object goes where `resourceRoutes` send it.

`RoutedPlatform` has the operations a deployment and drift detection use (apply, wait
for a rollout, live state, delete) over one `KubernetesPlatform` per platform provider,
routed by a `ResourceRouter` (`shared.config.resource_routes`, PipeCD's rules):

- **apply** splits the batch by provider (an object routed by labels to several goes
  to each) and applies each part on its cluster, so Namespaces, `pipecd.dev/order` and
  the ConfigMap hashes of workloads are per cluster, as a pod can only use what its
  own cluster has;
- **live state** lists every provider the router knows (`ResourceRouter.providers`)
  plus `also_listed` (those another commit's routes use), each object marked with its
  `cluster`, so a prune or a clean-up compares and deletes per cluster; the live tree
  is read from the same providers, and `labelled` reads each once for both;
- **delete** deletes a live object on the cluster it was read from, and a key or a
  rendered manifest where the router sends it.

An application with no routes is one cluster: the same calls, one provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.config.manifests import Manifest
from shared.config.resource_routes import ResourceRouter
from shared.errors import PlatformError
from shared.platform.applying import Propagation
from shared.platform.kubernetes import KubernetesPlatform
from shared.platform.livestate import Labelled
from shared.platform.resources import AppliedResource, RolloutStatus, parse_key

__all__ = ["RoutedPlatform"]


class RoutedPlatform:
    """The clusters of one application (already open; their owner closes them)."""

    def __init__(
        self,
        router: ResourceRouter,
        clusters: Mapping[str, KubernetesPlatform],
        *,
        also_listed: Iterable[str] = (),
    ) -> None:
        self.router = router
        self.clusters = dict(clusters)
        self.listed = tuple(dict.fromkeys([*router.providers, *also_listed]))
        """The providers whose live objects are the application's live state."""
        missing = [name for name in self.listed if name not in self.clusters]
        assert not missing, f"no cluster given for platform providers {missing}"

    async def apply(self, manifests: Sequence[Manifest], **options: Any) -> list[AppliedResource]:
        """`KubernetesPlatform.apply` of each provider's part of `manifests` (same options)."""
        parts: dict[str, list[Manifest]] = {}
        for manifest in manifests:
            for provider in self.router.providers_of(manifest.kind, manifest.name):
                parts.setdefault(provider, []).append(manifest)
        applied: list[AppliedResource] = []
        for provider in self.router.providers:
            if provider in parts:
                applied += await self.clusters[provider].apply(parts[provider], **options)
        return applied

    async def wait_rollout(
        self, applied: AppliedResource, *, timeout_s: float, poll_s: float = 0.5
    ) -> RolloutStatus:
        """Wait for an applied workload's rollout on the cluster it was applied to, from the
        object its apply returned."""
        return await self._cluster_of(applied.cluster, applied.kind, applied.name).wait_rollout(
            applied.namespace,
            applied.name,
            kind=applied.kind,
            timeout_s=timeout_s,
            poll_s=poll_s,
            seen=applied.body or None,
        )

    async def labelled(self, application_id: str) -> dict[str, Labelled]:
        """The objects labelled for the application on each listed provider, as listed: one
        read of every cluster, for `live_resources` and `live_tree` both."""
        return {
            provider: await self.clusters[provider].labelled(application_id)
            for provider in self.listed
        }

    async def live_resources(
        self, application_id: str, *, listed: Mapping[str, Labelled] | None = None
    ) -> list[Manifest]:
        """The application's live objects on every listed provider, each with its `cluster`
        (from `listed`, what `labelled` read, for the providers it has)."""
        live: list[Manifest] = []
        for provider in self.listed:
            live += await self.clusters[provider].live_resources(
                application_id, listed=(listed or {}).get(provider)
            )
        return sorted(live, key=lambda m: (m.key, m.cluster))

    async def live_tree(
        self, application_id: str, *, listed: Mapping[str, Labelled] | None = None
    ) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
        """Each listed provider's live tree (`KubernetesPlatform.live_tree`), for
        `livetree.observe` to mark every object with its provider."""
        return {
            provider: await self.clusters[provider].live_tree(
                application_id, listed=(listed or {}).get(provider)
            )
            for provider in self.listed
        }

    async def delete(
        self,
        targets: Iterable[str | Manifest],
        *,
        propagation: Propagation = "Background",
        failures: list[tuple[str, PlatformError]] | None = None,
    ) -> list[str]:
        """Delete each target where it lives (a live object's `cluster`) or is routed (a key or
        a rendered manifest); the keys deleted, as `KubernetesPlatform.delete` gives them,
        suffixed ` on <provider>` when the application spans several (so are the keys
        added to `failures`, as in `KubernetesPlatform.delete`)."""
        parts: dict[str, list[str | Manifest]] = {}
        for target in targets:
            for provider in self._providers_of(target):
                parts.setdefault(provider, []).append(target)
        deleted: list[str] = []
        for provider in dict.fromkeys([*self.listed, *parts]):
            if provider not in parts:
                continue
            refused: list[tuple[str, PlatformError]] | None = None if failures is None else []
            keys = await self.clusters[provider].delete(
                parts[provider], propagation=propagation, failures=refused
            )
            deleted += [self._placed(key, provider) for key in keys]
            if failures is not None and refused:
                failures += [(self._placed(key, provider), exc) for key, exc in refused]
        return deleted

    def _providers_of(self, target: str | Manifest) -> tuple[str, ...]:
        if isinstance(target, Manifest):
            if target.cluster in self.clusters:
                return (target.cluster,)
            return self.router.providers_of(target.kind, target.name)
        _, kind, _, name = parse_key(target)
        return self.router.providers_of(kind, name)

    def _cluster_of(self, cluster: str, kind: str, name: str) -> KubernetesPlatform:
        if cluster in self.clusters:
            return self.clusters[cluster]
        return self.clusters[self.router.providers_of(kind, name)[0]]

    def _placed(self, key: str, provider: str) -> str:
        return key if len(self.listed) == 1 else f"{key} on {provider}"
