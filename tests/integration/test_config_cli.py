"""`slipway config check`, run as a separate process like CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import COMPAT, CONFIG_FIXTURES, REPO_ROOT

FIXTURES = CONFIG_FIXTURES
COMPAT = COMPAT
ROOT = REPO_ROOT


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slipway_cli", "config", "check", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_good_repository_passes_with_one_line_per_file() -> None:
    """A valid config repository exits 0 and prints an ok line for each file."""
    done = _check(str(FIXTURES / "repo"), str(FIXTURES / "control" / "slipway.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 7
    assert all(line.startswith("ok  ") for line in lines)
    assert f"ok  {FIXTURES / 'repo' / 'account' / 'prd' / 'app.pipecd.yaml'}  " in done.stdout
    assert "(KubernetesApp account-prd)" in done.stdout
    assert "(AnalysisTemplate 1 template)" in done.stdout
    assert "(Slipway bucketeer)" in done.stdout


def test_one_bad_file_fails_the_run_and_is_located() -> None:
    """Any wrong file makes the exit status non-zero; its line gives file:line:col and field."""
    broken = FIXTURES / "broken" / "app.pipecd.yaml"
    done = _check(str(FIXTURES / "repo"), str(broken))
    assert done.returncode == 2
    assert (
        f"ERR {broken}:9:11: spec.pipeline.stages[0].with.duration: expected a duration like "
        '"10s", "5m" or "1h30m", got "soon"'
    ) in done.stdout.splitlines()
    assert done.stdout.count("ok  ") == 6


def test_missing_path_and_empty_directory_fail(tmp_path: Path) -> None:
    """A path that does not exist, or holds no config, is an error too."""
    done = _check(str(tmp_path / "nope.yaml"), str(tmp_path))
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"ERR {tmp_path / 'nope.yaml'}: cannot read: No such file or directory",
        f"ERR {tmp_path}: no configuration files found",
    ]


def test_strict_turns_warnings_into_failure(tmp_path: Path) -> None:
    """Warnings are printed under their file; --strict makes them fail the run."""
    app = tmp_path / "app.pipecd.yaml"
    app.write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  pipeline:\n"
        "    stages:\n      - name: WAIT\n        with: {duration: 1m, durration: 2m}\n"
    )
    relaxed = _check(str(app))
    assert relaxed.returncode == 0
    assert "    warning: " in relaxed.stdout and 'unknown option "durration"' in relaxed.stdout
    assert _check("--strict", str(app)).returncode == 2


def test_json_output_carries_the_error_fields() -> None:
    """--json prints one object per file with the error's parts."""
    done = _check("--json", str(FIXTURES / "broken"))
    assert done.returncode == 2
    (result,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["ok"] is False
    assert result["error"]["line"] == 9
    assert result["error"]["field_path"] == "spec.pipeline.stages[0].with.duration"


@pytest.mark.skipif(not COMPAT.is_dir(), reason=f"the PipeCD example corpus is not at {COMPAT}")
def test_whole_pipecd_corpus_checks_clean() -> None:
    """Every file of PipeCD's examples passes `config check`."""
    done = _check(str(COMPAT))
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("ok  ") == 26
    assert "ERR" not in done.stdout
