"""The control config's platform providers as clusters, opened once each, and an
application's `RoutedPlatform` over them.

The executor and the drift service meet clusters the same way: the application's own
provider (`platform_provider_of`: the one it was registered with, else the control
config's first) plus those its config's `resourceRoutes` name
(`shared.config.resource_routes`). A cluster is opened at its first use and kept
until `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

from shared.config.app_config import ApplicationConfig
from shared.config.control import KubernetesProviderConfig, configured, platform_provider_of
from shared.config.resource_routes import ResourceRouter, resource_router
from shared.platform.kubernetes import KubernetesPlatform
from shared.platform.routed import RoutedPlatform

__all__ = ["Clusters"]


class Clusters:
    """The platform providers (name → config, in the control config's order) and their labels,
    which `resourceRoutes` may select them by."""

    def __init__(
        self,
        configs: Mapping[str, KubernetesProviderConfig],
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.configs = dict(configs)
        labels = labels or {}
        self.labels = {name: dict(labels.get(name, {})) for name in self.configs}
        self._open: dict[str, KubernetesPlatform] = {}
        self._opening = asyncio.Lock()  # deployments run side by side: one client each

    def provider_of(self, application_provider: str) -> str:
        """The application's own provider (`platform_provider_of`); a ConfigError if none."""
        name, _ = platform_provider_of(application_provider, self.configs)
        return name

    def router(
        self, config: ApplicationConfig, application_provider: str, *, config_text: str = ""
    ) -> ResourceRouter:
        """Where `config`'s objects go; a route no provider answers is a ConfigFileError."""
        default = self.provider_of(application_provider)
        return resource_router(config, default, self.labels, config_text=config_text)

    async def routed(
        self, router: ResourceRouter, *, also_listed: Iterable[str] = ()
    ) -> RoutedPlatform:
        """The clusters of `router` (and `also_listed`, for live state) as one platform."""
        names = dict.fromkeys([*router.providers, *also_listed])
        clusters = {name: await self.cluster(name) for name in names}
        return RoutedPlatform(router, clusters, also_listed=also_listed)

    async def cluster(self, name: str) -> KubernetesPlatform:
        """Provider `name`'s cluster, opened now if it is not yet."""
        async with self._opening:
            platform = self._open.get(name)
            if platform is None:
                config = configured(self.configs, name, "platform provider")
                # No kubeconfigPath: the pod's in-cluster account (KubernetesPlatform says
                # so clearly when this is not a pod).
                platform = KubernetesPlatform.from_config(config, name)
                await platform.open()
                self._open[name] = platform
            return platform

    async def close(self) -> None:
        """Close every cluster opened; they open again at their next use."""
        opened, self._open = self._open, {}
        for platform in opened.values():
            with contextlib.suppress(Exception):
                await platform.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
