"""The Kubernetes platform adapter: one cluster's connection, and the operations on it.

It speaks the API server's REST paths through `kubernetes_asyncio`'s `ApiClient`
(one per cluster, from a kubeconfig and context, never the process-wide
default), so it works the same against a real cluster and against kubesim.
`KubernetesPlatform` holds the connection and the cluster's settings; each job
is a room of its own that it calls:

- **apply and delete** (`applying`): server-side apply in order, PipeCD's
  sync-by-replace, namespaces created on demand; deletes, Namespaces last.
- **Live state** (`livestate`): the objects of the live kinds labelled for an
  application, and its tree down to what their controllers made.
- **Rollouts** (`rollout`): waiting for a workload to be healthy, scaling it.
- **Adoption** (`adoption`): the objects piped applied, and taking them over.
- **Discovery** (`discovery`) maps a kind to its plural and scope, cached per
  group/version and refreshed once on a miss.
- **Requests and errors** (`apiserver`): every request goes through
  `ApiServer.request`, which maps the server's refusals to the `PlatformError`
  subtree, each naming the operation and the object.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar

from opentelemetry import trace

from shared.config.control import KubernetesProviderConfig
from shared.config.manifests import Manifest
from shared.errors import NotFound, PlatformError
from shared.platform import applying, livestate, rollout
from shared.platform.adoption import AdoptionRefused, pipecd_objects, takeover_patch
from shared.platform.apiserver import ApiServer
from shared.platform.applying import Propagation
from shared.platform.discovery import ApiResource, Discovery
from shared.platform.livekinds import LiveKinds, controlled
from shared.platform.resources import (
    FIELD_MANAGER,
    VARIANT_LABEL,
    AppliedResource,
    RolloutStatus,
    describe,
)

__all__ = ["KubernetesPlatform"]

_JSON_PATCH: Final = "application/json-patch+json"


_tracer = trace.get_tracer("slipway.platform.kubernetes")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S")


def _spanned(
    name: str,
) -> Callable[
    [Callable[Concatenate[_S, _P], Awaitable[_R]]], Callable[Concatenate[_S, _P], Awaitable[_R]]
]:
    """Run the operation in a child span of the caller's (a stage's), so a trace shows each
    call to the cluster, how long it took and the error it raised."""

    def wrap(
        method: Callable[Concatenate[_S, _P], Awaitable[_R]],
    ) -> Callable[Concatenate[_S, _P], Awaitable[_R]]:
        @functools.wraps(method)
        async def spanned(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            with _tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT):
                return await method(self, *args, **kwargs)

        return spanned

    return wrap


class KubernetesPlatform:
    """One Kubernetes cluster, reached through a kubeconfig file and context.

    Without a kubeconfig (None or ""), the in-cluster service account is used
    (a replica running as a pod deploys to its own cluster); its token file is
    re-read as the kubelet rotates it.

    Use it as an async context manager (or `open()` / `close()`); it owns its
    HTTP session. Every method may raise the `PlatformError` subtree.
    """

    def __init__(
        self,
        kubeconfig: str | Path | None,
        context: str | None = None,
        *,
        field_manager: str = FIELD_MANAGER,
        request_timeout_s: float = 30.0,
        live_kinds: LiveKinds | None = None,
        discovery_max_age_s: float = 60.0,
        piped_id: str = "",
        name: str = "",
    ) -> None:
        self.name = name
        """The platform provider this cluster is, written on what it applies and lists
        (`AppliedResource.cluster`, `Manifest.cluster`); "" when not named."""
        self.field_manager = field_manager
        self.piped_id = piped_id
        """Written as `pipecd.dev/piped` on every applied object when set (the provider's
        `pipedID`), as the piped a team ran before wrote it."""
        self.live_kinds = live_kinds or LiveKinds()
        # How stale the list of served kinds may be: a CRD installed by someone else
        # shows in live state after this long (one applied through us at once).
        self.discovery_max_age_s = discovery_max_age_s
        self._api = ApiServer(
            Path(kubeconfig) if kubeconfig else None, context, request_timeout_s=request_timeout_s
        )
        self._discovery = Discovery(self._api)

    @classmethod
    def from_config(cls, config: KubernetesProviderConfig, name: str = "") -> Self:
        """The cluster of a platform provider's config (no kubeconfigPath: in-cluster),
        listing the kinds its `appStateInformer` selects; `name` is the provider's."""
        informer = config.app_state_informer
        live_kinds = LiveKinds.of(
            include=[(m.api_version, m.kind) for m in informer.include_resources],
            exclude=[(m.api_version, m.kind) for m in informer.exclude_resources],
            namespace=informer.namespace,
        )
        return cls(
            config.kubeconfig_path or None,
            config.context or None,
            live_kinds=live_kinds,
            piped_id=config.piped_id,
            name=name,
        )

    # lifecycle

    async def open(self) -> Self:
        """Load the kubeconfig into a client of our own; a bad file or context is a ConfigError."""
        await self._api.open()
        return self

    async def close(self) -> None:
        """Close the connection to the API server."""
        await self._api.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # operations

    @_spanned("kubernetes apply")
    async def apply(
        self,
        manifests: Sequence[Manifest],
        *,
        application_id: str,
        deployment_id: str,
        commit_hash: str,
        variant: str | None = "primary",
        namespace: str | None = None,
        force_conflicts: bool = True,
        auto_create_namespace: bool = False,
        add_variant_to_selector: bool = False,
        variant_label: str = VARIANT_LABEL,
        pipecd_application_id: str = "",
    ) -> list[AppliedResource]:
        """Server-side apply `manifests`, Namespaces and CRDs first (`applying.apply`)."""
        return await applying.apply(
            self._api,
            self._discovery,
            manifests,
            cluster=self.name,
            field_manager=self.field_manager,
            piped_id=self.piped_id,
            application_id=application_id,
            deployment_id=deployment_id,
            commit_hash=commit_hash,
            variant=variant,
            namespace=namespace,
            force_conflicts=force_conflicts,
            auto_create_namespace=auto_create_namespace,
            add_variant_to_selector=add_variant_to_selector,
            variant_label=variant_label,
            pipecd_application_id=pipecd_application_id,
        )

    @_spanned("kubernetes delete")
    async def delete(
        self,
        targets: Iterable[str | Manifest],
        *,
        propagation: Propagation = "Background",
        namespace: str | None = None,
        failures: list[tuple[str, PlatformError]] | None = None,
    ) -> list[str]:
        """Delete objects by `Manifest` or key, Namespaces last (`applying.delete`)."""
        return await applying.delete(
            self._api,
            self._discovery,
            targets,
            propagation=propagation,
            namespace=namespace,
            failures=failures,
        )

    async def get(
        self, target: str | Manifest, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The live object, or None when it (or its kind) does not exist."""
        found = await self._discovery.locate(target, namespace)
        if found is None:
            return None
        resource, target_ns, name = found
        try:
            obj, _ = await self._api.request(
                "GET",
                resource.path(target_ns, name),
                verb="get",
                what=describe(resource.kind, target_ns, name),
            )
        except NotFound:
            return None
        return obj

    async def labelled(self, application_id: str) -> livestate.Labelled:
        """The objects labelled for the application, as listed (`livestate.labelled`): hand
        them to `live_resources` and `live_tree` to read the cluster once for both."""
        return await livestate.labelled(
            self._api,
            self._discovery,
            self.live_kinds,
            application_id,
            max_age_s=self.discovery_max_age_s,
        )

    async def live_resources(
        self,
        application_id: str,
        *,
        kinds: Iterable[tuple[str, str]] | None = None,
        listed: livestate.Labelled | None = None,
    ) -> list[Manifest]:
        """Every object labelled for the application, of the live kinds or of `kinds`, not
        controlled by another (`livestate.live_resources`; from `listed` when given)."""
        return await livestate.live_resources(
            self._api,
            self._discovery,
            self.live_kinds,
            application_id,
            max_age_s=self.discovery_max_age_s,
            cluster=self.name,
            kinds=kinds,
            listed=listed,
        )

    async def live_tree(
        self, application_id: str, *, listed: livestate.Labelled | None = None
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(apiVersion, kind, object) of the application's objects and what they own, for
        `livetree.observe` (`livestate.live_tree`; from `listed` when given)."""
        return await livestate.live_tree(
            self._api,
            self._discovery,
            self.live_kinds,
            application_id,
            max_age_s=self.discovery_max_age_s,
            listed=listed,
        )

    async def list_objects(
        self, *, label_selector: str = "", kinds: Iterable[tuple[str, str]] | None = None
    ) -> list[tuple[ApiResource, dict[str, Any]]]:
        """(kind, object) of every object of the live kinds (or `kinds`) matching the selector
        (`livestate.list_objects`)."""
        return await livestate.list_objects(
            self._api,
            self._discovery,
            self.live_kinds,
            max_age_s=self.discovery_max_age_s,
            label_selector=label_selector,
            kinds=kinds,
        )

    async def pipecd_objects(
        self, pipecd_application_id: str
    ) -> list[tuple[ApiResource, dict[str, Any]]]:
        """The objects piped applied for `pipecd_application_id`, with their managedFields;
        `AdoptionRefused` when there are none. Lists every object of the live kinds (no
        selector can pick an annotation): meant for a one-off `slipway app import`."""
        listed = [(r, item) for r, item in await self.list_objects() if not controlled(item)]
        wanted = {
            id(item) for item in pipecd_objects((i for _, i in listed), pipecd_application_id)
        }
        found = [(resource, item) for resource, item in listed if id(item) in wanted]
        if not found:
            raise AdoptionRefused(
                f"no object in the cluster is annotated pipecd.dev/application="
                f"{pipecd_application_id} (and pipecd.dev/managed-by=piped)"
            )
        return found

    @_spanned("kubernetes take_over")
    async def take_over(
        self, found: Sequence[tuple[ApiResource, dict[str, Any]]], application_id: str, *, now: str
    ) -> list[str]:
        """Hand each object's client-side-apply fields to this field manager and label it for
        `application_id` (`adoption.takeover_patch`); the keys, sorted. `now` (RFC 3339) is
        the managedFields entry's time. An object changed since it was read fails its
        patch's test (`Invalid` or `ResourceConflict`): list and take over again."""
        keys: list[str] = []
        for resource, item in found:
            metadata = item.get("metadata") or {}
            namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
            patch = takeover_patch(
                item,
                application_id=application_id,
                manager=self.field_manager,
                api_version=resource.api_version,
                time=now,
            )
            await self._api.request(
                "PATCH",
                resource.path(namespace, name),
                verb="take over",
                what=describe(resource.kind, namespace, name),
                query=[("fieldManager", self.field_manager)],
                body=patch,
                content_type=_JSON_PATCH,
            )
            keys.append(f"{resource.group}/{resource.kind}/{namespace}/{name}")
        return sorted(keys)

    @_spanned("kubernetes wait_rollout")
    async def wait_rollout(
        self,
        namespace: str,
        name: str,
        *,
        kind: str = "Deployment",
        timeout_s: float,
        poll_s: float = 0.5,
        seen: dict[str, Any] | None = None,
    ) -> RolloutStatus:
        """Wait until the workload's rollout is healthy (`rollout.wait_rollout`); `seen` is
        the workload as its apply returned it, watched from instead of read again."""
        return await rollout.wait_rollout(
            self._api,
            self._discovery,
            namespace,
            name,
            kind=kind,
            timeout_s=timeout_s,
            poll_s=poll_s,
            seen=seen,
        )

    async def scale(
        self, namespace: str, name: str, replicas: int, *, kind: str = "Deployment"
    ) -> None:
        """Set a workload's replicas through its `scale` subresource (`rollout.scale`)."""
        await rollout.scale(self._api, self._discovery, namespace, name, replicas, kind=kind)
