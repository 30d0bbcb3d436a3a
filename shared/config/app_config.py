"""A loaded application config: what `shared.config.loader` gives and the rest of the house reads.

Its own room so that the modules the loader uses (manifests, references) can name
it without importing the loader back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from shared.config.application import KubernetesApplicationSpec
from shared.config.errors import ConfigWarning

__all__ = ["ApplicationConfig"]


class ApplicationConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded `kind: KubernetesApp` file."""

    kind: Literal["KubernetesApp"]
    api_version: str
    spec: KubernetesApplicationSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def app_dir(self) -> Path:
        """The directory whose manifests this application deploys."""
        return self.path.parent

    @property
    def name(self) -> str:
        """`spec.name`, or the directory's name when the file does not give one."""
        return self.spec.name or self.path.resolve().parent.name
