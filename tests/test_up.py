"""`slipway up` (what `make demo` runs) brings the whole local stack up healthy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.sandbox.stack import SERVICES


def test_up_once_starts_every_service_ready_and_stops(tmp_path: Path) -> None:
    """`slipway up --once` starts servers and every service, sees each ready, exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "up", "--once", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for service in SERVICES:
        assert f"{service}" in done.stdout
    assert done.stdout.count(" ready ") == len(SERVICES)
    assert "all services ready" in done.stdout
    assert (tmp_path / "env.sh").exists()
