"""Kubernetes API discovery: which kinds a cluster serves, their plural and scope.

Discovery (`/apis`, `/api/v1`, `/apis/<group>/<version>`) maps a kind to its
plural and scope, which is what a REST path needs (`ApiResource.path`). It is
cached per group/version and refreshed once on a miss, so a CRD applied
earlier in the same batch is found. `listable_kinds` is every served kind at
its group's preferred version (what live state lists), refreshed when older
than the age the caller accepts or after `forget`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

from shared.config.manifests import Manifest
from shared.errors import Invalid, NotFound
from shared.platform.apiserver import ApiServer
from shared.platform.resources import describe, parse_key

__all__ = ["ApiResource", "Discovery"]


@dataclass(frozen=True)
class ApiResource:
    """One kind as discovery describes it: enough to build its REST paths."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    listable: bool = True  # discovery lists the `list` verb for it

    @property
    def api_version(self) -> str:
        """`group/version`, or `version` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "") -> str:
        """The REST path of the collection, or of one object when `name` is given."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return f"{base}/{quote(name, safe='')}" if name else base


class Discovery:
    """What one API server serves, looked up as needed and cached."""

    def __init__(self, api: ApiServer) -> None:
        self._api = api
        self._groups: dict[str, str] | None = None  # group -> preferred version
        self._discovered: dict[str, dict[str, ApiResource] | None] = {}  # by group/version
        self._listable: tuple[float, list[ApiResource]] | None = None  # (when, kinds)

    def forget(self) -> None:
        """Look again next time: a CRD was applied or deleted through us."""
        self._groups = None
        self._listable = None

    async def listable_kinds(self, max_age_s: float) -> list[ApiResource]:
        """Every kind served with `list` at its group's preferred version, custom ones included;
        discovered afresh when the last look is older than `max_age_s`."""
        now = time.monotonic()
        if self._listable is not None and now - self._listable[0] <= max_age_s:
            return self._listable[1]
        self._groups = None
        kinds: list[ApiResource] = []
        for group, version in (await self.api_groups()).items():
            group_version = f"{group}/{version}" if group else version
            served = self._discovered[group_version] = await self._resource_list(group, version)
            kinds += [resource for resource in (served or {}).values() if resource.listable]
        self._listable = (now, kinds)
        return kinds

    async def api_groups(self) -> dict[str, str]:
        """Every served group's preferred version; the core group is ""."""
        if self._groups is None:
            listed, _ = await self._api.request("GET", "/apis", verb="discover", what="API groups")
            groups = {"": "v1"}
            for group in listed.get("groups") or ():
                preferred = (group.get("preferredVersion") or {}).get("version")
                versions = [v.get("version") for v in group.get("versions") or ()]
                if version := preferred or (versions[0] if versions else None):
                    groups[str(group.get("name", ""))] = str(version)
            self._groups = groups
        return self._groups

    async def preferred_version(self, group: str) -> str | None:
        """The group's preferred version; None when not served even after a fresh look."""
        groups = await self.api_groups()
        if group not in groups:
            self._groups = None  # a CRD may have added it since we looked
            groups = await self.api_groups()
        return groups.get(group)

    async def lookup(self, group: str, version: str, kind: str) -> ApiResource | None:
        """The kind in group/version, refreshing discovery once on a miss (a CRD just applied)."""
        for attempt in range(2):
            group_version = f"{group}/{version}" if group else version
            if attempt or group_version not in self._discovered:
                self._discovered[group_version] = await self._resource_list(group, version)
            kinds = self._discovered[group_version]
            if kinds is not None and kind in kinds:
                return kinds[kind]
        return None

    async def _resource_list(self, group: str, version: str) -> dict[str, ApiResource] | None:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        what = f"API {group or 'core'}/{version}"
        try:
            listed, _ = await self._api.request("GET", path, verb="discover", what=what)
        except NotFound:
            return None
        kinds: dict[str, ApiResource] = {}
        for entry in listed.get("resources") or ():
            plural = str(entry.get("name", ""))
            if not plural or "/" in plural:  # a subresource (deployments/scale)
                continue
            kind = str(entry.get("kind", ""))
            verbs = entry.get("verbs")
            listable = not isinstance(verbs, list) or "list" in verbs
            kinds.setdefault(
                kind,
                ApiResource(group, version, kind, plural, bool(entry.get("namespaced")), listable),
            )
        return kinds

    async def require(
        self,
        api_version: str,
        kind: str,
        manifest: Manifest | None,
        verb: str,
        namespace: str = "",
        name: str = "",
    ) -> ApiResource:
        """The kind `kind` of `api_version`; `NotFound` naming the object when it is not served."""
        group, _, version = api_version.rpartition("/")
        resource = await self.lookup(group, version, kind)
        if resource is not None:
            return resource
        if manifest is not None:
            namespace, name = manifest.namespace, manifest.name
        raise NotFound(
            f"{verb} {describe(kind, namespace, name)}: the cluster serves no kind {kind} in "
            f"{api_version} (is its CustomResourceDefinition installed?)",
            resource=describe(kind, namespace, name),
            reason="NotFound",
            code=404,
        )

    async def locate(
        self, target: str | Manifest, namespace: str | None
    ) -> tuple[ApiResource, str, str] | None:
        """(resource, namespace, name) of a manifest or key; None when the kind is not served."""
        if isinstance(target, Manifest):
            group, _, version = target.api_version.rpartition("/")
            kind, target_ns, name = target.kind, target.namespace, target.name
        else:
            try:
                group, kind, target_ns, name = parse_key(target)
            except ValueError as exc:
                raise Invalid(str(exc), resource=target, reason="BadRequest") from exc
            served = await self.preferred_version(group)
            if served is None:
                return None
            version = served
        resource = await self.lookup(group, version, kind)
        if resource is None:
            return None
        if not resource.namespaced:
            return resource, "", name
        return resource, (namespace or target_ns or "default"), name

    # the one way out to the API server
