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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from shared.planning.diff.changes import (
    DEFAULT_NAMESPACE,
    MISSING,
    FieldChange,
    ManifestLike,
    PathStep,
    ResourceChange,
    ResourceKey,
    key_of,
)
from shared.planning.diff.report import ManifestDiff
from shared.redaction import MASK

__all__ = ["DEFAULT_OPTIONS", "DiffOptions", "diff_manifests", "diff_objects", "diff_resource"]

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
    if isinstance(metadata, Mapping) and metadata.get("namespace") == DEFAULT_NAMESPACE:
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
