"""The sandbox's control config (`slipway.yaml`): what the seed's Piped config said, locally.

The seed's Piped config named an in-cluster Prometheus as `analysisProviders`
and a Slack channel under `notifications` for failed deployments; here those
are the sandbox's Prometheus and its local Slack-format receiver, and the
platform provider is kubesim's kubeconfig.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from shared.config import load_control_config

PROJECT: Final = "demo"
REPOSITORY_ID: Final = "config"
PLATFORM_PROVIDER: Final = "kubesim"
ANALYSIS_PROVIDER: Final = "prometheus"
SLACK_RECEIVER: Final = "slack"
LOOPBACK: Final = ("127.0.0.0/8", "::1/128")
FAILURE_EVENTS: Final = ("DEPLOYMENT_FAILED", "DEPLOYMENT_ROLLING_BACK")
"""What the seed's team was told about on Slack: failures, and the rollbacks they cause."""


@dataclass(frozen=True)
class ControlInputs:
    """What the sandbox's slipway.yaml points at: repo, kubesim, Prometheus, Slack receiver."""

    repository_url: str
    kubeconfig: Path
    prometheus_url: str | None
    slack_url: str | None
    poll_interval: str = "1s"
    branch: str = "main"


def control_document(inputs: ControlInputs) -> dict[str, Any]:
    """The `kind: Slipway` document for these servers (pure; `write_control_config` saves it)."""
    spec: dict[str, Any] = {
        "project": PROJECT,
        "repositories": [
            {
                "repoId": REPOSITORY_ID,
                "remote": inputs.repository_url,
                "branch": inputs.branch,
                "pollInterval": inputs.poll_interval,
            }
        ],
        "platformProviders": [
            {
                "name": PLATFORM_PROVIDER,
                "type": "KUBERNETES",
                "config": {"kubeconfigPath": str(inputs.kubeconfig)},
            }
        ],
        # The sandbox's Prometheus and the services its HTTP checks call listen on
        # loopback, which analysis may only reach when the config says so (opt-in).
        "analysisEgress": {"allow": list(LOOPBACK)},
    }
    if inputs.prometheus_url is not None:
        spec["analysisProviders"] = [
            {
                "name": ANALYSIS_PROVIDER,
                "type": "PROMETHEUS",
                "config": {"address": inputs.prometheus_url},
            }
        ]
    if inputs.slack_url is not None:
        spec["notifications"] = {
            "routes": [
                {
                    "name": "failures",
                    "events": list(FAILURE_EVENTS),
                    "receiver": SLACK_RECEIVER,
                }
            ],
            "receivers": [{"name": SLACK_RECEIVER, "slack": {"hookURL": inputs.slack_url}}],
        }
    return {"apiVersion": "slipway.dev/v1", "kind": "Slipway", "spec": spec}


def write_control_config(
    path: Path,
    inputs: ControlInputs,
    customize: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write `slipway.yaml` and load it back, so a mistake here fails before any service starts.

    `customize` may change the document first (the security benchmark adds a webhook
    secret and more notification routes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    document = control_document(inputs)
    if customize is not None:
        customize(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load_control_config(path)
    return path
