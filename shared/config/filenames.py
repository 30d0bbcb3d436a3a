"""Which files in a repository are application configs: PipeCD's rule, written once.

PipeCD (`model.IsApplicationConfigFile`) takes `app.pipecd.yaml`, any name
ending in `.pipecd.yaml` — a bare `.pipecd.yaml` too, since it ends so — and the
legacy `.pipe.yaml`. The gitwatcher's discovery, the loader and
`slipway config` all ask `is_application_config_name`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "APP_CONFIG_SUFFIX",
    "DEFAULT_CONFIG_FILENAME",
    "LEGACY_APP_CONFIG",
    "is_application_config_name",
]

APP_CONFIG_SUFFIX: Final = ".pipecd.yaml"
DEFAULT_CONFIG_FILENAME: Final = "app.pipecd.yaml"
LEGACY_APP_CONFIG: Final = ".pipe.yaml"
"""The legacy name, as in the seed's `account/dev/.pipe.yaml`."""


def is_application_config_name(name: str) -> bool:
    """Whether a file name (no directory) is an application config's."""
    return name.endswith(APP_CONFIG_SUFFIX) or name == LEGACY_APP_CONFIG
