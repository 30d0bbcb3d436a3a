"""The house's import rules hold (DESIGN §2): import-linter's contracts in pyproject.toml.

Services never import each other; `shared/` imports no service, kubesim, sandbox or CLI;
services import no tool or client; kubesim stands alone; only the CLI's supervisor imports
the sandbox; and deciders import no I/O library themselves. `make lint` runs the same
check; this test makes CI run it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


def test_the_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
