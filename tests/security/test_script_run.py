"""SCRIPT_RUN's clean room (issue 10, item 3): a merged script runs with only what it is given.

Attacks a merger (or a pushed branch once merged) could try through a script:
read the executor's environment (database and NATS URLs, `SLIPWAY_*`), flood
or break the stage log (a 1 MiB line, NUL bytes, undecodable bytes, endless
output), run forever with `timeout: 0`, or leave a process running after the
stage. Driven end to end: real NATS, PostgreSQL, git and kubesim.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import pwd
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubesim import KubeSim
from services.executor.script import (
    SAFE_PATH,
    OutputRecorder,
    ScriptContext,
    ScriptPolicy,
    script_env,
)
from shared.events.catalog import StageCompleted
from shared.stagelog import MAX_LINE_CHARS, StageLogs
from shared.testing import wait_until
from tests.support import Backends
from tests.support.executor import APP_PATH, Harness, app_files
from tests.support.git_helpers import WorkRepo
from tests.support.processes import wait_gone

SCRIPT = """\
  pipeline:
    stages:
      - name: SCRIPT_RUN
        id: script
        with:
          run: |
{run}
{options}
"""


def pipeline(run: str, options: str = "") -> str:
    """A one-stage SCRIPT_RUN pipeline running `run` (shell lines) with extra `with:` YAML."""
    body = "\n".join(f"            {line}" for line in run.splitlines())
    extra = "\n".join(f"          {line}" for line in options.splitlines())
    return SCRIPT.format(run=body, options=extra)


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


async def run_script(
    harness: Harness, run: str, options: str = "", *, within: float = 25.0
) -> tuple[StageCompleted, list[str]]:
    """Plan and run a SCRIPT_RUN deployment; its stage's completion and its stage log lines."""
    async with harness.running_app():
        commit = harness.work.commit(app_files(extra=pipeline(run, options)), "script")
        await harness.plan("d1", commit)
        await harness.completed("d1", within=within)
    events = await harness.events("d1")
    done = next(e for e in events if isinstance(e, StageCompleted) and e.stage_id == "script")
    lines = await StageLogs(harness.store.pool, None, harness.subjects).read("d1", "script")
    return done, [line.message for line in lines]


async def test_script_sees_none_of_the_executor_environment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env` in a script shows PATH, a fresh HOME, SR_* and its own env — no SLIPWAY_* or URLs."""
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", "postgresql://slipway:db-pass-9f8e@db:5432/x")
    monkeypatch.setenv("SLIPWAY_NATS_URL", "nats://executor:nats-pass-7d6c@nats:4222")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-key-5b4a")
    done, lines = await run_script(
        harness, 'env | sort\necho "cwd=$(pwd)"', "env: {GREETING: hello}"
    )
    assert done.status == "SUCCESS", done.reason
    log = "\n".join(lines)
    for leaked in ("SLIPWAY_", "db-pass-9f8e", "nats-pass-7d6c", "aws-key-5b4a", "postgresql://"):
        assert leaked not in log
    assert f"PATH={SAFE_PATH}" in lines
    assert "GREETING=hello" in lines
    assert "SR_DEPLOYMENT_ID=d1" in lines
    assert "SR_APPLICATION_NAME=web-prd" in lines
    assert any(line.startswith("SR_TRIGGERED_COMMIT_HASH=") for line in lines)
    triggered = next(line for line in lines if line.startswith("SR_TRIGGERED_AT="))
    assert int(triggered.removeprefix("SR_TRIGGERED_AT=")) > 1_700_000_000
    home = next(line.removeprefix("HOME=") for line in lines if line.startswith("HOME="))
    assert "slipway-script-" in home
    assert not await asyncio.to_thread(Path(home).exists)  # removed after the stage
    assert any(line.startswith("cwd=") and line.endswith(APP_PATH) for line in lines)


async def test_the_executor_cannot_be_inspected_by_its_scripts(harness: Harness) -> None:
    """Once a script ran, the executor is non-dumpable: `/proc/$PPID/environ` and ptrace are
    refused to a script of the same (non-root) user. The kernel enforces it; we check the flag."""
    done, _ = await run_script(harness, "echo hi")
    assert done.status == "SUCCESS", done.reason
    pr_get_dumpable = 3
    assert ctypes.CDLL(None).prctl(pr_get_dumpable, 0, 0, 0, 0) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the executor drops privileges only as root")
async def test_as_root_a_script_runs_as_an_unprivileged_account(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script_scratch: Path
) -> None:
    """An executor running as root runs scripts as `nobody` in a copy of the checkout it owns:
    the script cannot read the executor's /proc environ, root-only files or the original
    checkout, and the script can still work in (and write to) its app directory."""
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", "postgresql://slipway:db-pass-3c2b@db:5432/x")
    secret_file = tmp_path / "root-only"
    secret_file.write_text("root-only-1a0f\n")
    secret_file.chmod(0o600)
    run = (
        "id -u\n"
        "cat /proc/$PPID/environ | tr '\\0' '\\n'\n"
        f"cat {secret_file}\n"
        f"touch {script_scratch}/wrote\n"
        "touch written-here && echo wrote-in-app-dir\n"
        "ls\n"
    )
    done, lines = await run_script(harness, run)
    log = "\n".join(lines)
    assert done.status == "SUCCESS", done.reason
    assert str(pwd.getpwnam("nobody").pw_uid) in lines  # `id -u`
    assert "db-pass-3c2b" not in log and "SLIPWAY_" not in log
    assert "root-only-1a0f" not in log
    assert "wrote-in-app-dir" in lines  # its own copy of the checkout is writable
    assert (script_scratch / "wrote").stat().st_uid == pwd.getpwnam("nobody").pw_uid


async def test_a_huge_line_nul_and_bad_bytes_do_not_break_the_stage(harness: Harness) -> None:
    """A 1 MiB line, a NUL byte and invalid UTF-8: the stage still succeeds, lines capped."""
    run = "head -c 1048576 /dev/zero | tr '\\0' a\necho\nprintf 'nul\\0byte\\n'\n"
    run += "printf 'bad \\377\\376 bytes\\n'\necho done"
    done, lines = await run_script(harness, run)
    assert done.status == "SUCCESS", done.reason
    long = next(line for line in lines if line.startswith("aaaa"))
    assert len(long) <= MAX_LINE_CHARS + 100
    assert "more bytes" in long
    assert "nul\ufffdbyte" in lines
    assert "bad \ufffd\ufffd bytes" in lines
    assert "done" in lines


async def test_a_failing_script_with_nul_output_still_fails(harness: Harness) -> None:
    """The verdict stays right: NUL output then exit 4 fails the stage with code 4."""
    done, _ = await run_script(harness, "printf 'x\\0y\\n'\nexit 4")
    assert done.status == "FAILURE"
    assert done.reason.startswith("the script exited with code 4")


async def test_endless_output_is_counted_not_recorded(harness: Harness) -> None:
    """Output beyond the stage's line budget is summarized as '… N more bytes'."""
    harness.replica("x1", script_policy=ScriptPolicy(max_lines=50))
    done, lines = await run_script(harness, "seq 1 5000")
    assert done.status == "SUCCESS", done.reason
    numbers = [line for line in lines if line.isdigit()]
    assert numbers == [str(n) for n in range(1, 51)]
    summary = lines[-2]  # before the stage's own SUCCESS line
    assert summary.startswith("… ") and "more bytes (4950 lines)" in summary


async def test_zero_timeout_means_the_default_not_forever(harness: Harness) -> None:
    """`timeout: 0` on a script that sleeps forever: killed at the executor's default."""
    harness.replica("x1", script_policy=ScriptPolicy(default_timeout_s=1.0))
    done, _ = await run_script(harness, "sleep 600", "timeout: 0s", within=20)
    assert done.status == "FAILURE"
    assert done.reason == "the script timed out after 1s and was killed"


async def test_nothing_the_script_started_outlives_it(
    harness: Harness, script_scratch: Path
) -> None:
    """A background child of a script that exited is killed with its process group."""
    marker, child = script_scratch / "survivor", script_scratch / "child.pid"
    run = f"(sleep 2; touch {marker}) >/dev/null 2>&1 &\necho $! > {child}\nexit 0"
    done, _ = await run_script(harness, run)
    assert done.status == "SUCCESS", done.reason
    await wait_gone(child)
    assert not marker.exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("escape", ["setsid", "double fork"])
async def test_a_child_that_left_the_process_group_is_killed_too(
    harness: Harness, script_scratch: Path, escape: str
) -> None:
    """`setsid` (a new session) or a double fork into one: the process-group kill misses
    them; the reaper every script runs below (services/executor/reaper.py) does not."""
    pidfile = script_scratch / "escapee"
    daemon = f"sh -c 'echo $$ > {pidfile}; exec sleep 600'"
    start = {
        "setsid": f"setsid {daemon} >/dev/null 2>&1 </dev/null &",
        "double fork": f"(setsid {daemon} >/dev/null 2>&1 </dev/null &) &",
    }[escape]
    run = f"{start}\nwhile [ ! -s {pidfile} ]; do sleep 0.05; done\nexit 0"
    done, _ = await run_script(harness, run)
    assert done.status == "SUCCESS", done.reason
    pid = int(pidfile.read_text())
    try:
        await wait_until(lambda: not _alive(pid), within_s=5, what=f"the escapee {pid} killed")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_cancelling_the_deployment_kills_the_script_and_its_children(
    harness: Harness, script_scratch: Path
) -> None:
    """Cancel while a script runs: the stage is cancelled, its whole process group killed."""
    marker, child = script_scratch / "survivor", script_scratch / "child.pid"
    run = f"(sleep 3; touch {marker}) >/dev/null 2>&1 &\necho $! > {child}\necho started\nsleep 600"
    async with harness.running_app():
        commit = harness.work.commit(app_files(extra=pipeline(run)), "script")
        await harness.plan("d1", commit)
        logs = StageLogs(harness.store.pool, None, harness.subjects)

        async def started() -> bool:
            return any(line.message == "started" for line in await logs.read("d1", "script"))

        await wait_until(started, what="the script's first line")
        await harness.cancel("d1", with_rollback=False)
        assert (await harness.completed("d1")).status == "CANCELLED"
    await wait_gone(child)
    assert not marker.exists()


def test_output_recorder_cuts_lines_and_counts_the_rest() -> None:
    """Pure: lines split across chunks, cut at max_line_bytes, the budget's excess summarized."""
    recorder = OutputRecorder(ScriptPolicy(max_line_bytes=100, max_lines=2, max_bytes=10_000))
    out = recorder.feed(b"fir") + recorder.feed(b"st\n" + b"x" * 250 + b"\nthird\nfou")
    out += recorder.close()
    assert out[0] == "first"
    assert out[1] == "x" * 100 + " … 150 more bytes"
    assert out[2] == (
        "… 10 more bytes (2 lines) of output not recorded: a stage keeps 2 lines / 10000 bytes"
    )


def test_script_env_is_built_not_inherited_and_hides_the_remote_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pure: only PATH/HOME/TMPDIR/LANG, SR_* and the stage's env; no remote password."""
    monkeypatch.setenv("SLIPWAY_NATS_URL", "nats://x:y@z")
    context = ScriptContext(
        deployment_id="d1",
        application_id="a1",
        repository_url="https://bot:remote-pw-2468@git.example/config.git",
        labels={"env": "prd"},
    )
    env = script_env(context, tmp_path, {"A": "1"}, {"B": "2"})
    assert not any(key.startswith("SLIPWAY_") for key in env)
    assert env["HOME"] == str(tmp_path) and env["PATH"] == SAFE_PATH
    assert (env["A"], env["B"], env["SR_LABELS_ENV"]) == ("1", "2", "prd")
    assert "remote-pw-2468" not in env["SR_REPOSITORY_URL"]
    assert "remote-pw-2468" not in env["SR_CONTEXT_RAW"]
    assert json.loads(env["SR_CONTEXT_RAW"])["deploymentID"] == "d1"


def test_a_line_as_long_as_the_budget_is_cut_not_dropped() -> None:
    """Pure: a single line larger than the stage's byte budget is still recorded, cut."""
    recorder = OutputRecorder(ScriptPolicy(max_line_bytes=100, max_lines=10, max_bytes=1024))
    out = recorder.feed(b"z" * 5000 + b"\n") + recorder.close()
    assert out == ["z" * 100 + " … 4900 more bytes"]
