"""Services run as real processes (`python -m services.<name>`), the way fault tests need them:
started with a test's settings, `kill -9`ed, stopped, and their output kept in a log file that
is added to the test's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from shared.testing import wait_until
from tests.support import Backends
from tests.support.paths import REPO_ROOT

LOG_TAIL_LINES = 40


def process_gone(pid: int) -> bool:
    """Whether process `pid` has ended: no longer in /proc, or a zombie nobody has reaped yet
    (in a container, an orphan's zombie may wait for a PID 1 that never reaps)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # `pid (comm) state …`: comm may hold spaces and parentheses, the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(pid_file: Path, within_s: float = 10.0) -> None:
    """Wait until the process whose pid a script wrote into `pid_file` has ended (killed with
    its process group): waiting on the process, never a guessed sleep."""
    pid = int(await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10.0))
    await wait_until(lambda: process_gone(pid), within_s, what=f"process {pid} still running")


def service_env(backends: Backends, control: Path | None = None, **settings: str) -> dict[str, str]:
    """The `SLIPWAY_*` settings of a service process over `backends` (no health server), with
    the control config `control` and `settings` (already named `SLIPWAY_…`) on top."""
    env = {
        "SLIPWAY_DATABASE_URL": backends.app_database_url,
        "SLIPWAY_DATABASE_SCHEMA": backends.schema,
        "SLIPWAY_NATS_URL": backends.nats_url,
        "SLIPWAY_SUBJECT_PREFIX": backends.subjects.prefix,
        "SLIPWAY_HEALTH_PORT": "-1",
    }
    if control is not None:
        env["SLIPWAY_CONTROL_CONFIG"] = str(control)
    return env | settings


class ServiceProcess:
    """One service process; its stdout and stderr go to `log_path`."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        # Settings come only from `env`: none leak in from the shell running the tests.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=REPO_ROOT,
                env=inherited | env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def kill_9(self) -> None:
        """`kill -9`, and wait until it is gone: the crash the fault tests are about."""
        self.popen.send_signal(signal.SIGKILL)
        await self.exited(within_s=10)

    async def exited(self, within_s: float) -> int:
        """Its exit code, once it exits (TimeoutExpired after `within_s`)."""
        return await asyncio.to_thread(self.popen.wait, within_s)

    async def stop(self, within_s: float = 15.0) -> int:
        """SIGTERM, and its exit code once it has shut down (`kill -9` if it does not)."""
        if self.running:
            self.popen.terminate()
        try:
            return await self.exited(within_s)
        except subprocess.TimeoutExpired:
            await self.kill_9()
            raise


class ServiceProcesses:
    """The service processes of one test, each with its own log file under `log_dir`."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[ServiceProcess] = []

    def start(
        self, service: str, *args: str, instance: str = "", **settings: str
    ) -> ServiceProcess:
        """`python -m services.<service> *args` with the group's env, `settings` on top and, if
        given, `SLIPWAY_SERVICE_INSTANCE=instance`."""
        env = self.env | settings
        if instance:
            env["SLIPWAY_SERVICE_INSTANCE"] = instance
        name = f"{service}-{instance or len(self.started)}.log"
        process = ServiceProcess([f"services.{service}", *args], env, self.log_dir / name)
        self.started.append(process)
        return process

    async def stop_all(self) -> None:
        for process in self.started:
            if process.running:
                await process.stop()

    def log_tails(self) -> str:
        """The last lines each process wrote, to read beside a failure."""
        parts = []
        for process in self.started:
            lines = process.log().splitlines()[-LOG_TAIL_LINES:]
            parts.append(f"--- {process.log_path.name} (exit {process.returncode}) ---")
            parts.extend(lines)
        return "\n".join(parts)


@contextlib.asynccontextmanager
async def service_processes(env: dict[str, str], log_dir: Path) -> AsyncIterator[ServiceProcesses]:
    """Start service processes in the block; whatever still runs is stopped when it ends, and a
    failure in it carries the processes' logs."""
    group = ServiceProcesses(env, log_dir)
    try:
        yield group
    except BaseException as failure:
        await group.stop_all()
        failure.add_note(group.log_tails())
        raise
    finally:
        await group.stop_all()
