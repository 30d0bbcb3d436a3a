"""`slipway COMMAND` imports only what COMMAND needs: a command over the API starts in a
fraction of a second, not the seconds that the database driver, NATS, kubesim and the
planner take to import (every command's module used to load on every run)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO_ROOT

# Run `slipway ARGS` in this interpreter, then print which heavy packages it had loaded.
_LOADED_AFTER = """
import sys
from slipway_cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("asyncpg", "nats", "kubesim", "shared.planning", "shared.eventlog", "aiohttp")
print(" ".join(sorted(name for name in heavy if name in sys.modules)), file=sys.stderr)
"""


def _heavy_modules_loaded(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_AFTER, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stderr.strip().splitlines()[-1].split() if done.stderr.strip() else []


def test_a_command_over_the_api_loads_no_driver_nor_planner() -> None:
    assert _heavy_modules_loaded("deployment", "--help") == []
    assert _heavy_modules_loaded("app", "list", "--help") == []
