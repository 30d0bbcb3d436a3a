"""Where the tests find the repository, their fixture files and the handbook's PipeCD corpus,
whichever layer folder a test module lives in."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository's root (where pyproject.toml is): the cwd of the CLI subprocesses."""

CONFIG_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "config"
"""Config repositories and control configs, good and bad, that the config tests load."""

COMPAT = REPO_ROOT.parent / "shared" / "compat" / "pipecd-examples"
"""PipeCD's own example configs, beside the checkout (the handbook's `compat/`)."""
