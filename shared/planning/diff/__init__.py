"""Diff two sets of Kubernetes manifests, resource by resource and field by field.

    diff = diff_manifests(old_manifests, new_manifests)
    diff.summary            # "image helloworld: v1 → v2, +1 resource"
    diff.render()           # PipeCD's plan-preview layout
    diff.changed[0].fields  # FieldChange(path, old, new), Secret values masked

The modules: `compare` (pairing by key and PipeCD's equalities: the rules are
in its docstring), `changes` (what a diff reports: keys, field changes, how a
value is shown), `report` (`ManifestDiff`, its rendering and one-line summary).
"""

from shared.planning.diff.changes import (
    MISSING,
    FieldChange,
    ManifestLike,
    PathStep,
    ResourceChange,
    ResourceKey,
    format_path,
    key_of,
)
from shared.planning.diff.compare import (
    DEFAULT_OPTIONS,
    DiffOptions,
    diff_manifests,
    diff_objects,
    diff_resource,
)
from shared.planning.diff.report import WORKLOAD_KINDS, ManifestDiff, image_name_and_version

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
