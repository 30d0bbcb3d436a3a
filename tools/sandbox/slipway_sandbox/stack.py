"""The local sandbox stack: servers, kubesim, Prometheus, migrations and service processes.

`slipway up`, `slipway demo` (and `make demo`) and the end-to-end test run
this. Each service replica is a real subprocess (`python -m services.<name>`),
configured only through the environment, as in production, and judged healthy
by its own `/readyz` endpoint. kubesim runs as its own process too
(`slipway kubesim`), so the supervisor's event loop never shares time with the
cluster it is watching.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import services
from shared.db import connect
from shared.eventlog import (
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    DEFAULT_READER_ROLE,
    migrate,
    role_of_service,
)
from slipway_sandbox._process import free_port, port_open, wait_until, write_private
from slipway_sandbox._process import stop as stop_process
from slipway_sandbox.nats import NatsServer
from slipway_sandbox.postgres import PostgresServer

ALL_SERVICES: Final[tuple[str, ...]] = (
    "relay",
    "projector",
    "api",
    "gitwatcher",
    "planner",
    "executor",
    "drift",
    "analysis",
    "notifier",
)
"""Every service the sandbox knows, in start order (the relay first: nothing moves without it)."""

SCALABLE: Final = frozenset(ALL_SERVICES)
"""Services that may run as several replicas: every one. The relay's replicas elect one leader
(an advisory lock), the projector's take turns on each projection's state row, and drift's
append with the stream version they read; the others share work through leases and consumers."""

# Where the installed (or checked-out) `services` package is: the sandbox is a separate
# distribution (tools/sandbox), so not a path relative to this file.
_SERVICES_DIR: Final = Path(services.__file__).resolve().parent


def present_services(names: tuple[str, ...] = ALL_SERVICES) -> tuple[str, ...]:
    """Those of `names` that exist in this checkout (a runnable `services/<name>/__main__.py`)."""
    return tuple(name for name in names if (_SERVICES_DIR / name / "__main__.py").exists())


SERVICES: tuple[str, ...] = present_services()
"""Every service module under `services/` that the sandbox starts, in start order."""


@dataclass
class ServiceProcess:
    """One service replica as a child process, with its environment, log and health port."""

    name: str
    env: dict[str, str]
    log_path: Path
    health_port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    instance: str = ""

    def __post_init__(self) -> None:
        self.instance = self.instance or self.name

    @property
    def health_url(self) -> str:
        """The replica's health server (`/readyz`, `/metrics`)."""
        return f"http://127.0.0.1:{self.health_port}"

    def start(self) -> None:
        """Start `python -m services.<name>`, appending its output to its log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C in the terminal reaches only the
                # supervisor, which then stops services in order.
                start_new_session=True,
            )

    def ready(self) -> bool:
        """Whether `/readyz` answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.health_url}/readyz", timeout=1) as reply:  # noqa: S310 - our own loopback URL
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def exited(self) -> int | None:
        """The exit code, or None while it runs (or was never started)."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL after 15 s."""
        if self.process is not None:
            stop_process(self.process, grace=15)


class KubesimProcess:
    """`slipway kubesim` as a subprocess; ready once it listens and has written its kubeconfig."""

    def __init__(self, data_dir: Path, *, ready_delay_s: float = 0.5) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.kubeconfig = data_dir / "kubesim.kubeconfig"
        self.log_path = data_dir / "logs" / "kubesim.log"
        self.ready_delay_s = ready_delay_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """kubesim's API URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_url(self) -> str:
        """kubesim's list of pod metrics endpoints (Prometheus's service discovery)."""
        return f"{self.url}/kubesim/targets"

    def start(self) -> KubesimProcess:
        """Start kubesim as a process and wait for its kubeconfig."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "slipway_cli",
            "kubesim",
            "--port",
            str(self.port),
            "--kubeconfig",
            str(self.kubeconfig),
            "--ready-delay",
            str(self.ready_delay_s),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: port_open(self.port) and self.kubeconfig.exists(),
            process=self.process,
            what="kubesim",
            log=self.log_path,
        )
        return self

    def exited(self) -> int | None:
        """The exit code, or None while it runs (or was never started)."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """Stop kubesim: SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None:
            stop_process(self.process, grace=10)
            self.process = None


@dataclass
class Stack:
    """The servers and service processes of one sandbox, and the URLs between them."""

    data_dir: Path
    schema: str = "slipway"
    services: tuple[str, ...] = SERVICES
    replicas: Mapping[str, int] = field(default_factory=dict)
    """Replicas per service (default 1); only `SCALABLE` services may have more."""
    service_settings: Mapping[str, str] = field(default_factory=dict)
    """Extra `SLIPWAY_*` variables for every service (e.g. shorter executor timeouts)."""
    control_config: Path | None = None
    postgres: PostgresServer | None = None
    nats: NatsServer | None = None
    kubesim: KubesimProcess | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    api_port: int = field(default_factory=free_port)
    api_key: str = ""

    def __post_init__(self) -> None:
        for name, count in self.replicas.items():
            if count < 1 or (count > 1 and name not in SCALABLE):
                raise ValueError(f"{name}: {count} replicas (only {sorted(SCALABLE)} scale)")

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def app_database_url(self) -> str:
        """The URL services use: the application role."""
        assert self.postgres is not None
        return self.postgres.url_for(DEFAULT_APP_ROLE)

    @property
    def projector_database_url(self) -> str:
        """The projector's URL: the only role that may write projections."""
        assert self.postgres is not None
        return self.postgres.url_for(DEFAULT_PROJECTOR_ROLE)

    def start_servers(self) -> None:
        """Start PostgreSQL (durable) and NATS, then migrate the schema."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer(self.data_dir / "postgres", durable=True).start()
        self.nats = NatsServer(self.data_dir / "nats").start()
        asyncio.run(self.migrate())

    async def migrate(self) -> None:
        """Create or update the schema, as `slipway migrate` does."""
        assert self.postgres is not None
        conn = await connect(self.postgres.url, schema="public", statement_timeout_s=0)
        try:
            await migrate(conn, schema=self.schema)
        finally:
            await conn.close()

    def start_kubesim(self) -> KubesimProcess:
        """Start kubesim as a process."""
        self.kubesim = KubesimProcess(self.data_dir).start()
        return self.kubesim

    def service_env(self, name: str, health_port: int, instance: str) -> dict[str, str]:
        """The environment of one service replica: its database role, NATS, ports and config."""
        assert self.nats is not None and self.postgres is not None
        env = os.environ | {
            # Each service as its own role: only the projector may build projections, only
            # the API read the console's secrets.
            "SLIPWAY_DATABASE_URL": self.postgres.url_for(role_of_service(name)),
            "SLIPWAY_DATABASE_SCHEMA": self.schema,
            # Its own NATS user: only the subjects its role needs (shared/natsauth.py).
            # All three set, so a login inherited from the caller's environment cannot win.
            "SLIPWAY_NATS_URL": self.nats.address,
            "SLIPWAY_NATS_USER": name,
            "SLIPWAY_NATS_PASSWORD": self.nats.passwords[name],
            "SLIPWAY_NATS_PASSWORD_FILE": "",
            "SLIPWAY_HEALTH_PORT": str(health_port),
            "SLIPWAY_LOG_FORMAT": "json",
            "SLIPWAY_SERVICE_INSTANCE": instance,
            # Each replica its own clones: two processes must not share a git work area.
            "SLIPWAY_GIT_CACHE_DIR": str(self.data_dir / "git" / instance),
        }
        if name == "api":
            # Replicas beyond the first take any free port; the CLI talks to the first.
            env["SLIPWAY_API_PORT"] = str(self.api_port) if instance.endswith("-0") else "0"
        if self.control_config is not None:
            env["SLIPWAY_CONTROL_CONFIG"] = str(self.control_config)
        return env | dict(self.service_settings)

    def start_services(self) -> None:
        """Start every service's replicas (not waiting for readiness)."""
        for name in self.services:
            for index in range(self.replicas.get(name, 1)):
                instance = f"{name}-{index}"
                port = free_port()
                suffix = "" if self.replicas.get(name, 1) == 1 else f"-{index}"
                service = ServiceProcess(
                    name,
                    self.service_env(name, port, instance),
                    self.data_dir / "logs" / f"{name}{suffix}.log",
                    port,
                    instance=instance,
                )
                service.start()
                self.processes.append(service)

    def wait_ready(self, timeout: float = 60.0) -> list[str]:
        """Instances not ready by `timeout` (empty when all are)."""
        deadline = time.monotonic() + timeout
        waiting = list(self.processes)
        while waiting and time.monotonic() < deadline:
            waiting = [s for s in waiting if s.exited() is None and not s.ready()]
            if any(s.exited() is not None for s in self.processes):
                break
            time.sleep(0.1)
        # `waiting` is what the last poll found unready: no second round of /readyz calls.
        return [s.instance for s in self.processes if s.exited() is not None or s in waiting]

    def restart_exited(self) -> list[ServiceProcess]:
        """Restart services that died; the supervisor calls this while it waits."""
        restarted = []
        for service in self.processes:
            if service.exited() is not None:
                service.restarts += 1
                service.start()
                restarted.append(service)
        return restarted

    def env_file(self) -> Path:
        """A file the user can `source` to point the CLI at this sandbox."""
        assert self.postgres is not None and self.nats is not None
        path = self.data_dir / "env.sh"
        # The virtualenv's bin/ (slipway, helm) first: `make demo` runs `.venv/bin/slipway`,
        # and a user who sources this in another terminal has no `slipway` on PATH otherwise.
        # sys.executable as invoked, not resolved: a venv's python is a symlink out of it.
        commands = shlex.quote(str(Path(sys.executable).parent))
        lines = [
            f'export PATH={commands}:"$PATH"',
            f"export SLIPWAY_DATABASE_URL={self.app_database_url}",
            f"export SLIPWAY_PROJECTOR_DATABASE_URL={self.projector_database_url}",
            f"export SLIPWAY_READER_DATABASE_URL={self.postgres.url_for(DEFAULT_READER_ROLE)}",
            f"export SLIPWAY_MIGRATE_DATABASE_URL={self.postgres.url}",
            f"export SLIPWAY_DATABASE_SCHEMA={self.schema}",
            # The admin user, for an operator's `nats` or scripts; services have their own.
            f"export SLIPWAY_NATS_URL={self.nats.url}",
            # The read-only subscriber identity, for event subscribers (docs/events.md).
            f"export SLIPWAY_SUBSCRIBER_NATS_URL={self.nats.url_for('subscriber')}",
            f"export SLIPWAY_API_URL={self.api_url}",
        ]
        if self.api_key:
            lines.append(f"export SLIPWAY_API_KEY={self.api_key}")
        if self.control_config is not None:
            lines.append(f"export SLIPWAY_CONTROL_CONFIG={self.control_config}")
        if self.kubesim is not None:
            lines.append(f"export KUBECONFIG={self.kubesim.kubeconfig}")
        write_private(path, "\n".join(lines) + "\n")  # admin API key and NATS password
        return path

    def stop(self) -> None:
        """SIGTERM every service at once, then wait for each (killing the slow)."""
        for service in reversed(self.processes):
            if service.process is not None and service.exited() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in reversed(self.processes):
            service.stop()
        if self.kubesim is not None:
            self.kubesim.stop()
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()
