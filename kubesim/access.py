"""Forbidden rules: requests the emulator refuses with `403 Forbidden`, as RBAC would.

There is no authentication: every request acts as one user (`kubesim`). A
rule names a namespace, verbs and resources (each `*` for any); a request
matching any rule is forbidden. This is how tests reproduce a deployer that
may not touch a namespace, or may not delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesim.resources import ResourceType

USER = "kubesim"


@dataclass(frozen=True)
class ForbiddenRule:
    """`ForbiddenRule(namespace="prod", verbs=("delete",))`: no deletes in prod."""

    namespace: str = "*"
    verbs: tuple[str, ...] = ("*",)
    resources: tuple[str, ...] = ("*",)  # plural (`deployments`) or `plural.group`

    def matches(self, verb: str, rtype: ResourceType, namespace: str) -> bool:
        """Whether this rule forbids `verb` on `rtype` in `namespace` (`*` matches any)."""
        names = {rtype.plural, f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural}
        return (
            (self.namespace == "*" or self.namespace == namespace)
            and ("*" in self.verbs or verb in self.verbs)
            and ("*" in self.resources or bool(names & set(self.resources)))
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ForbiddenRule:
        """A rule from its JSON/YAML form; unknown keys are an error, not ignored."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"forbidden rule: unknown keys {sorted(unknown)}")
        return cls(
            namespace=str(data.get("namespace", "*")),
            verbs=tuple(_strings(data.get("verbs", ["*"]))),
            resources=tuple(_strings(data.get("resources", ["*"]))),
        )

    def to_json(self) -> dict[str, Any]:
        """The rule's JSON form, as `GET /kubesim/forbidden` returns it."""
        return {
            "namespace": self.namespace,
            "verbs": list(self.verbs),
            "resources": list(self.resources),
        }


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(f"forbidden rule: expected a string or a list of strings, got {value!r}")


def first_match(
    rules: Iterable[ForbiddenRule], verb: str, rtype: ResourceType, namespace: str
) -> ForbiddenRule | None:
    """The first rule forbidding the request, or None when it is allowed."""
    return next((r for r in rules if r.matches(verb, rtype, namespace)), None)
