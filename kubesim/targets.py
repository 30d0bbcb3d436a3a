"""What a resource path names: the kind, the version, the namespace, the object, the subresource.

    /api/v1/[namespaces/<ns>/]<plural>[/<name>[/<subresource>[/<rest>]]]
    /apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<subresource>[/<rest>]]]

A path the registry does not serve is a 404 `NotFound` Status, as on a real server.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubesim.errors import ApiError
from kubesim.resources import Registry, ResourceType

__all__ = ["Target", "no_route", "resolve_target"]


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    rtype: ResourceType
    version: str
    namespace: str
    name: str = ""
    sub: str = ""
    rest: str = ""


def resolve_target(registry: Registry, group: str, version: str, rest: list[str]) -> Target:
    """The target of the path segments after `<group>/<version>` (`rest`, never empty)."""

    def lookup(plural: str) -> ResourceType:
        rtype = registry.by_plural(group, version, plural)
        if rtype is None:
            raise no_route()
        return rtype

    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = registry.by_plural(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            name = rest[3] if len(rest) > 3 else ""
            sub = rest[4] if len(rest) > 4 else ""
            return Target(candidate, version, rest[1], name, sub, "/".join(rest[5:]))
    rtype = lookup(rest[0])
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if rtype.namespaced and name:
        raise no_route()
    return Target(rtype, version, "", name, sub, "/".join(rest[3:]))


def no_route() -> ApiError:
    """The 404 a real server answers for a path it does not serve."""
    return ApiError(404, "NotFound", "the server could not find the requested resource")
