"""`slipway up` (what `make demo` runs) brings the whole local stack up healthy."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from slipway_sandbox.stack import present_services


def test_up_once_starts_every_service_ready_and_stops(sandbox_dir: Path) -> None:
    """`slipway up --once` starts servers, kubesim and every service, sees each ready, exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "slipway_cli", "up", "--once", "--data-dir", str(sandbox_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    services = present_services()
    assert {"relay", "projector", "api", "gitwatcher", "planner", "executor"} <= set(services)
    for service in services:
        assert f"{service}-0 " in done.stdout
    assert done.stdout.count(" ready ") == len(services)
    assert "kubesim " in done.stdout
    assert "all services ready" in done.stdout
    assert "playing the seed's story" not in done.stdout
    assert "stopped" in done.stdout
    env = (sandbox_dir / "env.sh").read_text()
    assert "SLIPWAY_API_URL=" in env and "KUBECONFIG=" in env
    assert "SLIPWAY_SUBSCRIBER_NATS_URL=nats://subscriber:" in env
    assert (sandbox_dir / "slipway.yaml").exists()
    # The README's next step, in a new terminal whose PATH lacks the virtualenv: `slipway` runs.
    found = subprocess.run(
        ["bash", "-c", f"source {sandbox_dir / 'env.sh'} && command -v slipway"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert found.stdout.strip() == str(Path(sys.executable).parent / "slipway"), found


def test_up_stays_up_until_ctrl_c_then_stops_everything(sandbox_dir: Path) -> None:
    """`slipway up` stays up, says how to explore, and Ctrl-C stops every process it started."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slipway_cli",
            "up",
            "--no-story",
            "--allow-missing",
            "--data-dir",
            str(sandbox_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        else:
            raise AssertionError("".join(lines))
        output = "".join(lines)
        assert f"source {sandbox_dir / 'env.sh'}" in output
        # The story is over when this prints: a bare `events tail` would show nothing.
        assert "slipway events tail --from-position 0" in output
        pids = [
            int(word)
            for line in lines
            if " pid " in line
            for word in [line.split(" pid ")[1].split()[0]]
        ]
        assert len(pids) == len(present_services())
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + rest
    assert "stopped" in rest
    for pid in pids:
        assert not _alive(pid), f"service pid {pid} outlived `slipway up`"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
