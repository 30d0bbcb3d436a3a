"""The seed's config repository layout, as files for a real git repository in a test.

One folder per service, one sub-folder per environment (`dev` quick-syncs,
`prd` runs canary → analysis → primary → clean), and the shared
`.pipe/analysis-template.yaml` with a `grpc_error_rate` metric (DESIGN §1).
"""

from __future__ import annotations

from slipway_sandbox.seed_layout import ANALYSIS_TEMPLATE, DEV_CONFIG, MANIFESTS, PRD_CONFIG

# The seed's configs are re-exported: tests build repositories from them.
__all__ = ["DEV_CONFIG", "PRD_CONFIG", "image_bump", "seed_files", "service_files"]

REGISTRY = "ghcr.io/bucketeer-io"


def service_files(
    service: str, env: str, *, tag: str = "v1", replicas: int = 2, config: str | None = None
) -> dict[str, str]:
    """The files of `<service>/<env>/`: its `.pipe.yaml` and its manifests."""
    if config is None:
        config = (DEV_CONFIG if env == "dev" else PRD_CONFIG).format(name=f"{service}-{env}")
    return {
        f"{service}/{env}/.pipe.yaml": config,
        f"{service}/{env}/manifests.yaml": MANIFESTS.format(
            service=service, tag=tag, replicas=replicas, registry=REGISTRY
        ),
    }


def seed_files(service: str = "account", *, tag: str = "v1") -> dict[str, str]:
    """A whole config repository: the shared template, and the service in dev and prd."""
    return {
        ".pipe/analysis-template.yaml": ANALYSIS_TEMPLATE,
        **service_files(service, "dev", tag=tag),
        **service_files(service, "prd", tag=tag),
    }


def image_bump(service: str, env: str, tag: str) -> dict[str, str]:
    """The change CI's pull request makes: a new image tag in one environment."""
    return {
        f"{service}/{env}/manifests.yaml": MANIFESTS.format(
            service=service, tag=tag, replicas=2, registry=REGISTRY
        )
    }
