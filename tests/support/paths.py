"""Where the tests find the repository, their fixture files and the handbook's PipeCD corpus,
whichever layer folder a test module lives in."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository's root (where pyproject.toml is): the cwd of the CLI subprocesses."""

CONFIG_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "config"
"""Config repositories and control configs, good and bad, that the config tests load."""

COMPAT = REPO_ROOT.parent / "shared" / "compat" / "pipecd-examples"
"""PipeCD's own example configs, beside the checkout (the handbook's `compat/`)."""


def _pipecd_mirror() -> Path | None:
    """PipeCD's source as a bare git repository (`.mirror/pipe-cd+pipecd/repo` above the
    checkout, or $SLIPWAY_PIPECD_MIRROR), for the tests that read its configs."""
    if explicit := os.environ.get("SLIPWAY_PIPECD_MIRROR"):
        return Path(explicit)
    for parent in REPO_ROOT.parents:
        candidate = parent / ".mirror" / "pipe-cd+pipecd" / "repo"
        if candidate.is_dir():
            return candidate
    return None


PIPECD_MIRROR = _pipecd_mirror()
"""PipeCD's repository (bare), or None where this machine has no copy."""
