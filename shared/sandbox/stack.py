"""The local sandbox stack: servers, migrations and service processes, supervised.

`slipway up` (and `make demo`) runs this. Each service is a real subprocess
(`python -m services.<name>`), configured only through the environment, as in
production, and judged healthy by its own `/readyz` endpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.db import connect
from shared.eventlog import DEFAULT_APP_ROLE, migrate
from shared.sandbox._process import free_port
from shared.sandbox._process import stop as stop_process
from shared.sandbox.nats import NatsServer
from shared.sandbox.postgres import PostgresServer

SERVICES: tuple[str, ...] = ("relay", "projector", "api")
"""Every service module under `services/` that the sandbox starts, in start order."""


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_path: Path
    health_port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def start(self) -> None:
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
        try:
            with urllib.request.urlopen(f"{self.health_url}/readyz", timeout=1) as reply:  # noqa: S310 - our own loopback URL
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=15)


@dataclass
class Stack:
    data_dir: Path
    schema: str = "slipway"
    services: tuple[str, ...] = SERVICES
    postgres: PostgresServer | None = None
    nats: NatsServer | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    api_port: int = field(default_factory=free_port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def app_database_url(self) -> str:
        assert self.postgres is not None
        return self.postgres.url_for(DEFAULT_APP_ROLE)

    def start_servers(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer(self.data_dir / "postgres", durable=True).start()
        self.nats = NatsServer(self.data_dir / "nats").start()
        asyncio.run(self._migrate())

    async def _migrate(self) -> None:
        assert self.postgres is not None
        conn = await connect(self.postgres.url, schema="public")
        try:
            await migrate(conn, schema=self.schema)
        finally:
            await conn.close()

    def service_env(self, name: str, health_port: int) -> dict[str, str]:
        assert self.nats is not None
        return os.environ | {
            "SLIPWAY_DATABASE_URL": self.app_database_url,
            "SLIPWAY_DATABASE_SCHEMA": self.schema,
            "SLIPWAY_NATS_URL": self.nats.url,
            "SLIPWAY_HEALTH_PORT": str(health_port),
            "SLIPWAY_LOG_FORMAT": "json",
            "SLIPWAY_SERVICE_INSTANCE": f"{name}-0",
            "SLIPWAY_API_PORT": str(self.api_port),  # read by the api service only
        }

    def start_services(self) -> None:
        for name in self.services:
            port = free_port()
            service = ServiceProcess(
                name, self.service_env(name, port), self.data_dir / "logs" / f"{name}.log", port
            )
            service.start()
            self.processes.append(service)

    def wait_ready(self, timeout: float = 60.0) -> list[str]:
        """Names of services not ready by `timeout` (empty when all are)."""
        deadline = time.monotonic() + timeout
        waiting = list(self.processes)
        while waiting and time.monotonic() < deadline:
            waiting = [s for s in waiting if s.exited() is None and not s.ready()]
            if any(s.exited() is not None for s in self.processes):
                break
            time.sleep(0.1)
        return [s.name for s in self.processes if s.exited() is not None or not s.ready()]

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
        path.write_text(
            f"export SLIPWAY_DATABASE_URL={self.app_database_url}\n"
            f"export SLIPWAY_MIGRATE_DATABASE_URL={self.postgres.url}\n"
            f"export SLIPWAY_DATABASE_SCHEMA={self.schema}\n"
            f"export SLIPWAY_NATS_URL={self.nats.url}\n"
            f"export SLIPWAY_API_URL={self.api_url}\n"
        )
        return path

    def stop(self) -> None:
        for service in reversed(self.processes):
            if service.process is not None and service.exited() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in reversed(self.processes):
            service.stop()
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()
