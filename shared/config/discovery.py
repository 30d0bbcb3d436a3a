"""Finding config files in a repository: application configs and the shared `.pipe/` files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

SHARED_DIR: Final = ".pipe"
_SKIP_DIRS: Final = frozenset({".git", SHARED_DIR})

APP_CONFIG_SUFFIX: Final = ".pipecd.yaml"
DEFAULT_CONFIG_FILENAME: Final = "app.pipecd.yaml"
LEGACY_APP_CONFIG: Final = ".pipe.yaml"
"""The legacy name, as in the seed's `account/dev/.pipe.yaml`."""


def is_application_config_name(name: str) -> bool:
    """Whether a file name (no directory) is an application config's: PipeCD's rule, once.

    PipeCD (`model.IsApplicationConfigFile`) takes `app.pipecd.yaml`, any name
    ending in `.pipecd.yaml` — a bare `.pipecd.yaml` too, since it ends so — and
    the legacy `.pipe.yaml`. The gitwatcher's discovery, the loader, plan preview
    and `slipway config` all ask this.
    """
    return name.endswith(APP_CONFIG_SUFFIX) or name == LEGACY_APP_CONFIG


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        yield Path(directory), dirs, sorted(files)


def find_application_configs(root: Path) -> list[Path]:
    """Application config files under `root`, sorted; skips `.git` and `.pipe/` directories."""
    found: list[Path] = []
    for directory, dirs, files in _walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        found.extend(directory / f for f in files if is_application_config_name(f))
    return found


def shared_files(directory: Path) -> list[Path]:
    """The YAML files directly in `directory` (shared templates), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def find_config_files(root: Path) -> list[Path]:
    """Application configs and every `.pipe/*.yaml` under `root` (what `config check` reads)."""
    found: list[Path] = []
    for directory, dirs, files in _walk(root):
        if directory.name == SHARED_DIR:
            found.extend(directory / f for f in files if f.endswith((".yaml", ".yml")))
            dirs[:] = []
            continue
        found.extend(directory / f for f in files if is_application_config_name(f))
    return sorted(found)
