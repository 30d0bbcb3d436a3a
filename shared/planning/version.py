"""The version a deployment deploys, derived from its images: PipeCD's `determineVersion`.

PipeCD's Kubernetes planner names a deployment's version after the container
images of its Deployments: the one image's tag, or `tag (name), tag (name)`
for several, or `unknown` without any. Its image parsing is kept as it is
(`name:tag` split on `:`, so an image whose registry has a port, or that has no
tag, has an empty tag), so the version reads the same in both tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from shared.planning.diff import ManifestLike

__all__ = ["VERSION_SHOWN_MAX", "VERSION_UNKNOWN", "determine_version", "shown_version"]

VERSION_UNKNOWN: Final = "unknown"
VERSION_SHOWN_MAX: Final = 200
"""The most of a version listings and notifications show: an image tag comes from a
repository, and a manifest may carry one of any length (Kubernetes' own limit is 128
characters a tag), which no table row or Slack field should have to hold."""


def _image(image: str) -> tuple[str, str]:
    """(name, tag) the way PipeCD's `parseContainerImage` reads an image reference."""
    parts = image.split(":")
    tag = parts[1] if len(parts) == 2 else ""
    return parts[0].split("/")[-1], tag


def _containers(body: Any) -> list[Any]:
    for key in ("spec", "template", "spec", "containers"):
        body = body.get(key) if isinstance(body, dict) else None
    return body if isinstance(body, list) else []


def determine_version(manifests: Sequence[ManifestLike]) -> str:
    """The version of these manifests: their Deployments' image tags (PipeCD's rule)."""
    images = [
        _image(container["image"])
        for manifest in manifests
        if manifest.kind == "Deployment"
        for container in _containers(dict(manifest.body))
        if isinstance(container, dict) and isinstance(container.get("image"), str)
    ]
    if not images:
        return VERSION_UNKNOWN
    if len(images) == 1:
        return images[0][1]
    return ", ".join(f"{tag} ({name})" for name, tag in images)


def shown_version(version: str) -> str:
    """`version` as listings and notifications show it: at most `VERSION_SHOWN_MAX`
    characters, an ellipsis ending a clipped one. Escaping is each surface's own."""
    if len(version) <= VERSION_SHOWN_MAX:
        return version
    return version[: VERSION_SHOWN_MAX - 1] + "…"
