"""Diff two sets of Kubernetes manifests, resource by resource and field by field.

Resources are paired by key — API group, kind, namespace and name — so a move
from `apps/v1beta2` to `apps/v1` is a change, not a delete plus an add, and
`namespace: default` is the same as no namespace (PipeCD pairs the same way).
Inside a pair, fields are compared the way PipeCD's plan preview compares
them (`WithEquateEmpty`, `WithCompareNumberAndNumericString`):

- `null`, a missing key, `""`, `[]` and `{}` are all "nothing", so adding
  `env: []` is not a change;
- a number equals a numeric string (`"1.5"` = `1.5`) and `2` equals `2.0`;
- lists are compared index by index (their order is meaningful in Kubernetes).

Two deliberate differences from PipeCD: `0` and `false` are values, not
"nothing" (`replicas: 0` scales an application to zero, and must show), and
resource quantities compare by amount (`1Gi` = `1024Mi`, which PipeCD gets by
round-tripping through the typed API objects). Secret values never leave
this module: they are masked in every change it reports, and every value it
renders is redacted (`shared.redaction`: registered secrets, URL tokens).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, TypeAlias

from shared.redaction import MASK, redact, redact_all

__all__ = [
    "DEFAULT_OPTIONS",
    "MISSING",
    "WORKLOAD_KINDS",
    "DiffOptions",
    "FieldChange",
    "ManifestDiff",
    "ManifestLike",
    "PathStep",
    "ResourceChange",
    "ResourceKey",
    "diff_manifests",
    "diff_objects",
    "diff_resource",
    "format_path",
    "image_name_and_version",
    "key_of",
]


class ManifestLike(Protocol):
    """What the diff needs of a manifest (`shared.config.manifests.Manifest` is one)."""

    @property
    def api_version(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def body(self) -> Mapping[str, Any]: ...


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

WORKLOAD_KINDS: Final = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
)
"""Kinds that run containers: their image and replica changes get their own summary."""

_CONFIG_KINDS: Final = frozenset({"ConfigMap", "Secret"})
_DEFAULT_NAMESPACE: Final = "default"
_MAX_SUMMARY_PARTS: Final = 6
_MAX_RENDERED_VALUE: Final = 120

# Fields the API server writes: never part of what a commit changes.
_DEFAULT_IGNORED: Final = (
    ("status",),
    ("metadata", "managedFields"),
    ("metadata", "resourceVersion"),
    ("metadata", "uid"),
    ("metadata", "generation"),
    ("metadata", "creationTimestamp"),
    ("metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"),
)


@dataclass(frozen=True)
class DiffOptions:
    """How strictly to compare; the defaults are plan preview's (and the planner's)."""

    equate_empty: bool = True
    compare_number_and_numeric_string: bool = True
    compare_quantities: bool = True
    ignored_paths: tuple[tuple[PathStep, ...], ...] = _DEFAULT_IGNORED


DEFAULT_OPTIONS: Final = DiffOptions()


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
    group = manifest.api_version.rsplit("/", 1)[0] if "/" in manifest.api_version else ""
    namespace = "" if manifest.namespace == _DEFAULT_NAMESPACE else manifest.namespace
    return ResourceKey(group, manifest.kind, namespace, manifest.name)


@dataclass(frozen=True)
class FieldChange:
    """One leaf that differs; `old`/`new` is `MISSING` when the field is absent on that side."""

    path: tuple[PathStep, ...]
    old: Any
    new: Any

    @property
    def path_str(self) -> str:
        return format_path(self.path)

    def render(self) -> str:
        if self.old is MISSING:
            return f"+ {self.path_str}: {_short(self.new)}"
        if self.new is MISSING:
            return f"- {self.path_str}: {_short(self.old)}"
        return f"~ {self.path_str}: {_short(self.old)} → {_short(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path_str,
            "old": None if self.old is MISSING else redact_all(self.old),
            "new": None if self.new is MISSING else redact_all(self.new),
        }


@dataclass(frozen=True)
class ResourceChange:
    key: ResourceKey
    api_version: str
    fields: tuple[FieldChange, ...]


@dataclass(frozen=True)
class ManifestDiff:
    """Resources added, removed and changed between an old and a new set of manifests."""

    added: tuple[tuple[ResourceKey, str], ...] = ()
    removed: tuple[tuple[ResourceKey, str], ...] = ()
    changed: tuple[ResourceChange, ...] = ()

    @property
    def no_change(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def summary(self) -> str:
        """One line a person reads first: `image helloworld: v1 → v2, +1 resource`."""
        return _summarise(self)

    def render(self) -> str:
        """Every added, removed and changed resource, in PipeCD's plan-preview layout."""
        if self.no_change:
            return "No changes were detected\n"
        lines: list[str] = []
        index = 0
        for key, _ in self.removed:
            index += 1
            lines += [f"- {index}. {key} (removed)", ""]
        for key, _ in self.added:
            index += 1
            lines += [f"+ {index}. {key} (added)", ""]
        for change in self.changed:
            index += 1
            lines.append(f"# {index}. {change.key}")
            lines += [f"  {f.render()}" for f in change.fields]
            lines.append("")
        return "\n".join(lines)

    def counts(self) -> str:
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed"

    def to_dict(self) -> dict[str, Any]:
        def resource(key: ResourceKey, api_version: str) -> dict[str, str]:
            return {
                "api_version": api_version,
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
            }

        return {
            "summary": self.summary,
            "added": [resource(k, v) for k, v in self.added],
            "removed": [resource(k, v) for k, v in self.removed],
            "changed": [
                {**resource(c.key, c.api_version), "fields": [f.to_dict() for f in c.fields]}
                for c in self.changed
            ],
        }


def diff_manifests(
    old: Iterable[ManifestLike],
    new: Iterable[ManifestLike],
    options: DiffOptions = DEFAULT_OPTIONS,
) -> ManifestDiff:
    """Pair `old` and `new` by key and compare each pair; results are sorted by key."""
    olds = _by_key(old)
    news = _by_key(new)
    added = tuple((k, news[k].api_version) for k in sorted(news.keys() - olds.keys()))
    removed = tuple((k, olds[k].api_version) for k in sorted(olds.keys() - news.keys()))
    changed: list[ResourceChange] = []
    for key in sorted(olds.keys() & news.keys()):
        fields = diff_resource(olds[key], news[key], options)
        if fields:
            changed.append(ResourceChange(key, news[key].api_version, tuple(fields)))
    return ManifestDiff(added, removed, tuple(changed))


def diff_resource(
    old: ManifestLike, new: ManifestLike, options: DiffOptions = DEFAULT_OPTIONS
) -> list[FieldChange]:
    """The fields that differ between two versions of one resource (Secret values masked)."""
    return diff_objects(
        _normalised(old), _normalised(new), options, secret="Secret" in (old.kind, new.kind)
    )


def diff_objects(
    old: Any,
    new: Any,
    options: DiffOptions = DEFAULT_OPTIONS,
    *,
    secret: bool = False,
) -> list[FieldChange]:
    """The leaves that differ between two decoded YAML/JSON values, in path order."""
    out: list[FieldChange] = []
    _diff((), old, new, options, out)
    if secret:
        out = [_masked(change) for change in out]
    return sorted(out, key=lambda c: _sort_key(c.path))


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


def image_name_and_version(image: str) -> tuple[str, str]:
    """(`helloworld`, `v1`) for `ghcr.io/pipe-cd/helloworld:v1`; a registry port is no tag."""
    name, _, digest = image.partition("@")
    last = name.rpartition("/")[2]
    base, _, tag = last.partition(":")
    if digest:
        return base, tag or digest.split(":", 1)[-1][:12]
    return base, tag or "latest"


# The comparison ----------------------------------------------------------------


def _diff(
    path: tuple[PathStep, ...], old: Any, new: Any, options: DiffOptions, out: list[FieldChange]
) -> None:
    if _ignored(path, options):
        return
    old_map, new_map = isinstance(old, Mapping), isinstance(new, Mapping)
    if options.equate_empty and ((old_map and _is_empty(new)) or (_is_empty(old) and new_map)):
        # An absent object is an empty one: compare leaf by leaf, so that only
        # what is really set shows (and `{a: ""}` against nothing is no change).
        old, new = old or {}, new or {}
    elif old is MISSING or old is None or new is MISSING or new is None:
        if options.equate_empty and _is_empty(old) and _is_empty(new):
            return
        if old is new:
            return
        out.append(FieldChange(path, old, new))
        return
    if isinstance(old, bool) or isinstance(new, bool):
        if old is not new:
            out.append(FieldChange(path, old, new))
        return
    if _is_number(old) or _is_number(new):
        a, b = _as_number(old, options), _as_number(new, options)
        same = a is not None and a == b
        if not same and not (options.compare_quantities and _same_quantity(path, old, new)):
            out.append(FieldChange(path, old, new))
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _diff((*path, str(key)), old.get(key, MISSING), new.get(key, MISSING), options, out)
        return
    if _is_list(old) and _is_list(new):
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else MISSING
            after = new[index] if index < len(new) else MISSING
            if before is MISSING or after is MISSING:
                # An item added or removed is one change, not one per leaf inside it.
                if not _ignored((*path, index), options):
                    out.append(FieldChange((*path, index), before, after))
                continue
            _diff((*path, index), before, after, options, out)
        return
    if type(old) is not type(new) or old != new:
        if options.compare_quantities and _same_quantity(path, old, new):
            return
        if options.equate_empty and _is_empty(old) and _is_empty(new):
            return
        out.append(FieldChange(path, old, new))


def _ignored(path: tuple[PathStep, ...], options: DiffOptions) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in options.ignored_paths)


def _is_empty(value: Any) -> bool:
    if value is MISSING or value is None:
        return True
    if isinstance(value, str | Mapping) or _is_list(value):
        return len(value) == 0
    return False


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any, options: DiffOptions) -> Decimal | None:
    if _is_number(value):
        return Decimal(str(value))
    if options.compare_number_and_numeric_string and isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


# Kubernetes resource quantities: `500m`, `1.5Gi`, `1e3`, `128974848`.
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX: Final = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def _same_quantity(path: tuple[PathStep, ...], old: Any, new: Any) -> bool:
    """Whether two values under `resources.limits|requests` are the same amount."""
    if len(path) < 3 or path[-3] != "resources" or path[-2] not in ("limits", "requests"):
        return False
    a, b = _quantity(old), _quantity(new)
    return a is not None and a == b


def _quantity(value: Any) -> Decimal | None:
    if _is_number(value):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    try:
        return Decimal(match[1]) * _SUFFIX[match[2] or ""]
    except InvalidOperation:
        return None


def _normalised(manifest: ManifestLike) -> Mapping[str, Any]:
    """The body as the API server would store it, as far as a diff can tell.

    `namespace: default` is dropped (the key already treats it as no
    namespace), and a Secret's `stringData` is folded into `data`.
    """
    body = manifest.body
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("namespace") == _DEFAULT_NAMESPACE:
        metadata = {k: v for k, v in metadata.items() if k != "namespace"}
        body = {**body, "metadata": metadata}
    if manifest.kind != "Secret" or not isinstance(body.get("stringData"), Mapping):
        return body
    data = dict(body.get("data") or {})
    for key, value in body["stringData"].items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    folded = {k: v for k, v in body.items() if k != "stringData"}
    folded["data"] = data
    return folded


def _masked(change: FieldChange) -> FieldChange:
    if change.path[:1] not in (("data",), ("stringData",)):
        return change
    return FieldChange(
        change.path,
        change.old if change.old is MISSING else MASK,
        change.new if change.new is MISSING else MASK,
    )


def _by_key(manifests: Iterable[ManifestLike]) -> dict[ResourceKey, ManifestLike]:
    # A later document with the same key wins, as it would when applied in order.
    return {key_of(m): m for m in manifests}


def _sort_key(path: tuple[PathStep, ...]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, s, "") if isinstance(s, int) else (1, 0, s) for s in path)


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


# The one-line summary ------------------------------------------------------------


def _summarise(diff: ManifestDiff) -> str:
    if diff.no_change:
        return "no changes"
    parts: list[str] = []
    for change in diff.changed:
        for part in _describe_change(change):
            if part not in parts:
                parts.append(part)
    if diff.added:
        parts.append(_count(len(diff.added), "+"))
    if diff.removed:
        parts.append(_count(len(diff.removed), "-"))
    if len(parts) > _MAX_SUMMARY_PARTS:
        hidden = len(parts) - (_MAX_SUMMARY_PARTS - 1)
        parts = [*parts[: _MAX_SUMMARY_PARTS - 1], f"and {hidden} more"]
    return ", ".join(parts)


def _describe_change(change: ResourceChange) -> list[str]:
    key = change.key
    if key.kind in _CONFIG_KINDS:
        return [f"{key.kind.lower()} {key.name} changed"]
    if key.kind not in WORKLOAD_KINDS:
        return [f"{key.kind.lower()} {key.name} changed"]
    parts: list[str] = []
    explained = 0
    for f in change.fields:
        if _is_image_path(f.path) and isinstance(f.old, str) and isinstance(f.new, str):
            parts.append(_describe_image(f.old, f.new))
            explained += 1
        elif f.path == ("spec", "replicas"):
            old = "unset" if f.old is MISSING or f.old is None else f.old
            new = "unset" if f.new is MISSING or f.new is None else f.new
            parts.append(f"replicas {key.name}: {old} → {new}")
            explained += 1
    if explained < len(change.fields):
        parts.append(f"{key.kind.lower()} {key.name} changed")
    return parts


def _is_image_path(path: tuple[PathStep, ...]) -> bool:
    return (
        len(path) >= 3
        and path[-1] == "image"
        and isinstance(path[-2], int)
        and path[-3] in ("containers", "initContainers")
    )


def _describe_image(old: str, new: str) -> str:
    old_name, old_version = image_name_and_version(old)
    new_name, new_version = image_name_and_version(new)
    if old_name == new_name:
        return f"image {new_name}: {old_version} → {new_version}"
    return f"image {old_name}:{old_version} → {new_name}:{new_version}"


def _count(n: int, sign: str) -> str:
    return f"{sign}{n} resource" + ("" if n == 1 else "s")
