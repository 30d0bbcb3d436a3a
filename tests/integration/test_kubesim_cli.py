"""`slipway kubesim`, run as a separate process the way a developer or the demo runs it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from kubesim.testing import eventually


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text("ready_delay_s: 0.3\nimages:\n  - {image: '*:bad', error_rate: 0.5}\n")
    return path


def _server_of(kubeconfig: Path) -> str | None:
    if not kubeconfig.exists():
        return None
    config = yaml.safe_load(kubeconfig.read_text())
    server: str = config["clusters"][0]["cluster"]["server"]
    return server


async def test_cli_writes_kubeconfig_serves_and_stops_on_sigterm(
    tmp_path: Path, rules_file: Path
) -> None:
    """It writes a kubeconfig for its port, serves the API and rules, and exits 0 on SIGTERM."""
    kubeconfig = tmp_path / "kube" / "config"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        "kubesim",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--rules",
        str(rules_file),
        "--kind",
        "example.com/v1/Widget",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        server = await eventually(lambda: _server_of(kubeconfig), within=20, message="kubeconfig")
        async with aiohttp.ClientSession(base_url=server) as http:
            async with http.get("/version") as response:
                assert (await response.json())["gitVersion"] == "v1.32.0"
            async with http.get("/kubesim/images") as response:
                rules = await response.json()
            assert rules["ready_delay_s"] == 0.3
            assert rules["images"][0]["image"] == "*:bad"
            async with http.get("/apis/example.com/v1") as response:
                assert (await response.json())["resources"][0]["name"] == "widgets"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, output.decode()
    assert f"kubesim listening on {server}" in output.decode()


async def test_cli_rejects_a_bad_rules_file(tmp_path: Path) -> None:
    """An unknown key in the rules file is a configuration error (exit 2) naming the file."""
    bad = tmp_path / "rules.yaml"
    bad.write_text("images:\n  - {image: '*', eror_rate: 0.5}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        "kubesim",
        "--rules",
        str(bad),
        "--kubeconfig",
        str(tmp_path / "kc"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "rules.yaml" in err.decode() and "eror_rate" in err.decode()
