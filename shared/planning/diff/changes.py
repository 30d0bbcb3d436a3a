"""What a manifest diff reports: resource keys, changed fields, and how a value is shown.

A resource is known across commits by its `ResourceKey` (API group, not
version; `default` namespace as none); a `FieldChange` is one leaf that
differs, `MISSING` on the side where the field is absent. Values are rendered
short and redacted (`shared.redaction`), as plan events, drift events and
previews carry them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

from shared.redaction import redact, redact_all

__all__ = [
    "MISSING",
    "FieldChange",
    "ManifestLike",
    "PathStep",
    "ResourceChange",
    "ResourceKey",
    "format_path",
    "key_of",
]

DEFAULT_NAMESPACE: Final = "default"
_MAX_RENDERED_VALUE: Final = 120


class ManifestLike(Protocol):
    """What the diff needs of a manifest (`shared.config.manifests.Manifest` is one)."""

    @property
    def api_version(self) -> str:
        """The manifest's apiVersion."""

    @property
    def kind(self) -> str:
        """The manifest's kind."""

    @property
    def name(self) -> str:
        """The manifest's name."""

    @property
    def namespace(self) -> str:
        """The manifest's namespace ("" for cluster-scoped)."""

    @property
    def body(self) -> Mapping[str, Any]:
        """The whole manifest as a mapping."""


class _Missing:
    """The value of a field that is not there (distinct from an explicit `null`)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

PathStep: TypeAlias = str | int


@dataclass(frozen=True, order=True)
class ResourceKey:
    """Identifies a resource across commits: the API group, not its version, is part of it."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def key_of(manifest: ManifestLike) -> ResourceKey:
    """What identifies a manifest across versions: group, kind, namespace, name."""
    group = manifest.api_version.rsplit("/", 1)[0] if "/" in manifest.api_version else ""
    namespace = "" if manifest.namespace == DEFAULT_NAMESPACE else manifest.namespace
    return ResourceKey(group, manifest.kind, namespace, manifest.name)


@dataclass(frozen=True)
class FieldChange:
    """One leaf that differs; `old`/`new` is `MISSING` when the field is absent on that side."""

    path: tuple[PathStep, ...]
    old: Any
    new: Any

    @property
    def path_str(self) -> str:
        """The field's path as text (`spec.template.spec.containers[0].image`)."""
        return format_path(self.path)

    def render(self) -> str:
        """One line of the diff: `+`, `-` or `~`, the path, the values (shortened)."""
        if self.old is MISSING:
            return f"+ {self.path_str}: {_short(self.new)}"
        if self.new is MISSING:
            return f"- {self.path_str}: {_short(self.old)}"
        return f"~ {self.path_str}: {_short(self.old)} → {_short(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with secret-looking values redacted."""
        return {
            "path": self.path_str,
            "old": None if self.old is MISSING else redact_all(self.old),
            "new": None if self.new is MISSING else redact_all(self.new),
        }


@dataclass(frozen=True)
class ResourceChange:
    """One resource's changed fields."""

    key: ResourceKey
    api_version: str
    fields: tuple[FieldChange, ...]


def format_path(path: Sequence[PathStep]) -> str:
    """`spec.template.spec.containers.0.image`; keys with dots are quoted: `labels["a.b/c"]`."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f".{step}" if text else str(step)
        elif "." in step or not step:
            text += f"[{json.dumps(step)}]"
        else:
            text += f".{step}" if text else step
    return text


def _short(value: Any) -> str:
    if isinstance(value, str) and value and "\n" not in value and value.strip() == value:
        text = value
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    # Redacted before it is cut (a registered secret in a ConfigMap, a token in a URL):
    # the rendering is what plan events, drift events and previews carry.
    text = redact(text)
    if len(text) > _MAX_RENDERED_VALUE:
        return text[: _MAX_RENDERED_VALUE - 1] + "…"
    return text
