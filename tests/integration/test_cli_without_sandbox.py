"""The CLI works where the sandbox is not installed (the service image, `pip install .`).

The sandbox is a separate distribution (tools/sandbox); only `slipway up`/`demo` need it,
and they say how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT

# `None` in sys.modules makes every import of the package fail as if it were not installed.
_WITHOUT_SANDBOX = """
import sys
sys.modules["slipway_sandbox"] = None
from slipway_cli import build_parser, main
build_parser()
sys.exit(main(sys.argv[1:]))
"""


def _slipway_without_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_SANDBOX, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_command_registers_without_the_sandbox() -> None:
    done = _slipway_without_sandbox("migrate", "--help")
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout


def test_up_and_demo_say_how_to_install_the_sandbox() -> None:
    for command in ("up", "demo"):
        done = _slipway_without_sandbox(command, "--once")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert "needs the local sandbox" in done.stderr
        assert "pip install -e tools/sandbox" in done.stderr
