"""The console's front-end files: third-party code from npm, and its own few static files.

The third-party files are never copied into git: `package.json` and
`package-lock.json` (repository root) pin them, `make` installs them with
`npm ci` into `node_modules/`, and the console serves them from there (or
from `SLIPWAY_CONSOLE_ASSETS_DIR`, where the service image puts them).
`ASSETS` is the whole list a page may load: any other name is a 404, so a
path can never walk out of the directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["ASSETS", "DEFAULT_ASSETS_DIR", "OWN_STATIC", "STATIC_DIR", "missing_assets"]

ASSETS: Final = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "htmx-sse.js": "htmx-ext-sse/sse.js",
    "chart.umd.js": "chart.js/dist/chart.umd.js",
}
"""Served name → its path under the npm install's `node_modules/`."""

DEFAULT_ASSETS_DIR: Final = Path(__file__).resolve().parents[3] / "node_modules"
"""A checkout's `node_modules/` (`make` installs it)."""

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
OWN_STATIC: Final = frozenset({"console.js", "console.css"})


def missing_assets(assets_dir: Path) -> list[str]:
    """The assets absent from `assets_dir` (a console without them works without scripts)."""
    return [name for name, rel in ASSETS.items() if not (assets_dir / rel).is_file()]
