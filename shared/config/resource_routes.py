"""PipeCD's `resourceRoutes`: which platform providers each manifest of an application goes to.

The rules are piped's `applierGroup` (pkg/app/piped/executor/kubernetes/applier_group.go):

- each manifest goes where the first route whose `match` fits it says (`kind` and `name`,
  each compared exactly when set; a route without `match` fits every manifest);
- `provider.name` names one provider; `provider.labels` selects every provider whose
  labels include them all, and the manifest is applied to (and deleted from) each of
  them, as PipeCD's `multiApplier` does; a route with neither is passed over;
- a manifest no route fits goes to the application's own provider.

A route naming a provider the control config does not have, or labels no provider
carries, is a `ConfigFileError` at the route's line (PipeCD refuses it when its
executor starts, before applying anything; Slipway the same, per stage).

Pure: the caller gives the providers (names and labels) and, for errors with a line,
the config file's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.config._decode import Path as FieldPath
from shared.config.app_config import ApplicationConfig
from shared.config.application import KubernetesResourceRoute, KubernetesResourceRouteMatcher
from shared.config.documents import open_document
from shared.config.errors import ConfigFileError

__all__ = ["ResourceRouter", "resource_router"]


@dataclass(frozen=True)
class ResourceRouter:
    """Where an application's manifests go: `default` (its own provider) unless a route fits."""

    default: str
    routes: tuple[tuple[KubernetesResourceRouteMatcher | None, tuple[str, ...]], ...] = ()
    """Each usable route: its matcher and the providers it sends to, in the file's order."""

    def providers_of(self, kind: str, name: str) -> tuple[str, ...]:
        """The providers a `kind` object called `name` is applied to, read and deleted on."""
        for matcher, providers in self.routes:
            if _fits(matcher, kind, name):
                return providers
        return (self.default,)

    @property
    def providers(self) -> tuple[str, ...]:
        """Every provider the application may have objects on: its own first."""
        names = [self.default] + [p for _, providers in self.routes for p in providers]
        return tuple(dict.fromkeys(names))


def _fits(matcher: KubernetesResourceRouteMatcher | None, kind: str, name: str) -> bool:
    if matcher is None:
        return True
    return (not matcher.kind or matcher.kind == kind) and (not matcher.name or matcher.name == name)


def resource_router(
    config: ApplicationConfig,
    default: str,
    providers: Mapping[str, Mapping[str, str]],
    *,
    config_text: str = "",
) -> ResourceRouter:
    """The router of `config`'s `resourceRoutes` over `providers` (name → labels, in the
    control config's order); `default` is the application's own provider.

    A route no provider answers raises `ConfigFileError` at its line in `config_text`
    (the file as loaded; without it, the error has no line), naming the provider or labels.
    """
    routes: list[tuple[KubernetesResourceRouteMatcher | None, tuple[str, ...]]] = []
    for index, route in enumerate(config.spec.resource_routes):
        chosen = _chosen(route, providers)
        if chosen is None:
            continue
        if isinstance(chosen, str):
            raise _error(config, config_text, _provider_at(index, route), chosen)
        routes.append((route.match, chosen))
    return ResourceRouter(default=default, routes=tuple(routes))


def _chosen(
    route: KubernetesResourceRoute, providers: Mapping[str, Mapping[str, str]]
) -> tuple[str, ...] | str | None:
    """The route's providers, a problem (str), or None for a route that names none."""
    known = ", ".join(providers) or "none"
    if name := route.provider.name:
        if name not in providers:
            return f"platform provider {name!r} is not in the control config (known: {known})"
        return (name,)
    if wanted := route.provider.labels:
        matching = tuple(
            provider
            for provider, labels in providers.items()
            # PipeCD's FindPlatformProvidersByLabels: a label missing reads as "".
            if len(labels) >= len(wanted)
            and all(labels.get(key, "") == value for key, value in wanted.items())
        )
        if not matching:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
            return f"no platform provider has the labels {shown} (providers: {known})"
        return matching
    return None


def _provider_at(index: int, route: KubernetesResourceRoute) -> FieldPath:
    field = "name" if route.provider.name else "labels"
    return ("spec", "resourceRoutes", index, "provider", field)


def _error(
    config: ApplicationConfig, config_text: str, at: FieldPath, problem: str
) -> ConfigFileError:
    if not config_text:
        return ConfigFileError(config.path, 0, 0, "", f"resourceRoutes: {problem}")
    doc, _ = open_document(Path(config.path), config_text, first_document=True)
    return doc.error(at, problem)
