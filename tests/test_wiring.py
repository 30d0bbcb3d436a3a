"""The start-up steps the services share (`shared.wiring`), seen from a real service process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared.runtime import EXIT_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every service that reads the control config through `shared.wiring.control_config`.
READERS = ("analysis", "drift", "executor", "gitwatcher", "notifier", "planner")


async def run_service_process(name: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    """`python -m services.<name>` with `env` as its only settings: its exit code and log lines."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.{name}",
        cwd=REPO_ROOT,
        env=inherited | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith(b"{")]
    return await process.wait(), lines


async def test_a_missing_control_config_exits_78_naming_it(
    app_database_url: str, schema: str, nats_url: str, tmp_path: Path
) -> None:
    """Each service given a control config that is not there exits EX_CONFIG, naming the file."""
    missing = tmp_path / "nowhere" / "slipway.yaml"
    env = {
        "SLIPWAY_DATABASE_URL": app_database_url,
        "SLIPWAY_DATABASE_SCHEMA": schema,
        "SLIPWAY_NATS_URL": nats_url,
        "SLIPWAY_HEALTH_PORT": "-1",
        "SLIPWAY_LOG_FORMAT": "json",
        "SLIPWAY_CONTROL_CONFIG": str(missing),
    }
    results = await asyncio.gather(*(run_service_process(name, env) for name in READERS))
    for name, (code, lines) in zip(READERS, results, strict=True):
        assert code == EXIT_CONFIG, (name, lines)
        [invalid] = [line for line in lines if line["event"] == "config_invalid"]
        assert invalid["error"].startswith(f"SLIPWAY_CONTROL_CONFIG: {missing}: cannot read"), name
        assert not [line for line in lines if line["event"] == "service_crashed"], name
