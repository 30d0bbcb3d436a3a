"""The start-up steps the services share (`shared.wiring`), seen from a real service process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.runtime import EXIT_CONFIG
from tests.support import Backends
from tests.support.processes import ServiceProcess, service_env, service_processes

# Every service that reads the control config through `shared.wiring.control_config`.
READERS = ("analysis", "drift", "executor", "gitwatcher", "notifier", "planner")


def log_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    """The JSON log lines the process wrote."""
    return [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]


async def test_a_missing_control_config_exits_78_naming_it(
    backends: Backends, tmp_path: Path
) -> None:
    """Each service given a control config that is not there exits EX_CONFIG, naming the file."""
    missing = tmp_path / "nowhere" / "slipway.yaml"
    env = service_env(backends, missing, SLIPWAY_LOG_FORMAT="json")
    async with service_processes(env, tmp_path / "logs") as services:
        processes = {name: services.start(name) for name in READERS}
        codes = {name: await process.exited(within_s=60) for name, process in processes.items()}
    for name, process in processes.items():
        lines = log_lines(process)
        assert codes[name] == EXIT_CONFIG, (name, lines)
        [invalid] = [line for line in lines if line["event"] == "config_invalid"]
        assert invalid["error"].startswith(f"SLIPWAY_CONTROL_CONFIG: {missing}: cannot read"), name
        assert not [line for line in lines if line["event"] == "service_crashed"], name
