"""The control config's Helm chart repositories, given to helm as PipeCD's piped gives them.

PipeCD's piped runs `helm repo add` for each `chartRepositories` entry when it
starts, so an application's `helmChart.repository: NAME` finds it. Slipway
writes the same entries as helm's own `repositories.yaml` in a private
directory (mode 0600: it may hold a password) and points helm at it through
`HELM_REPOSITORY_CONFIG` and `HELM_REPOSITORY_CACHE`, which the tools'
environment passes on (`manifests.tool_environment`). helm fetches a
repository's index when a chart first needs it (`manifests` retries once
after `helm repo update NAME`, as PipeCD does). Nothing here runs helm, so a
service starts whether or not helm is installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import yaml

from shared.config.control import ChartRepository

__all__ = ["install_chart_repositories", "repositories_yaml"]

_CONFIG: Final = "HELM_REPOSITORY_CONFIG"
_CACHE: Final = "HELM_REPOSITORY_CACHE"
_GENERATED: Final = "0001-01-01T00:00:00Z"  # helm reads it as a time; the value is unused


def repositories_yaml(repositories: Sequence[ChartRepository]) -> str:
    """helm's `repositories.yaml` for these repositories."""
    entries = [
        {
            "name": r.name,
            "url": r.address,
            "username": r.username,
            "password": r.password,
            "insecure_skip_tls_verify": r.insecure,
            "pass_credentials_all": False,
            "certFile": "",
            "keyFile": "",
            "caFile": "",
        }
        for r in repositories
    ]
    text: str = yaml.safe_dump({"apiVersion": "", "generated": _GENERATED, "repositories": entries})
    return text


def install_chart_repositories(
    repositories: Sequence[ChartRepository], *, directory: Path | None = None
) -> Path | None:
    """Write helm's repository config for `repositories` and point this process's helm at it
    (its environment); the file's path, or None when there are none (helm's own config stays)."""
    if not repositories:
        return None
    home = directory or Path(tempfile.mkdtemp(prefix="slipway-helm-"))
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "repositories.yaml"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(repositories_yaml(repositories))
    (home / "cache").mkdir(exist_ok=True, mode=0o700)
    os.environ[_CONFIG] = str(path)
    os.environ[_CACHE] = str(home / "cache")
    return path
