"""A real Prometheus (Debian's `prometheus` package) scraping kubesim's pods every second.

Its targets come from kubesim's HTTP service discovery (`GET
/kubesim/targets`, refreshed every second), so a canary pod is scraped
moments after kubesim starts it, with the pod's labels (`app`,
`pipecd_dev_variant`, `namespace`, `pod`) on every series. With
`basic_auth_users` (user → bcrypt hash) the HTTP API asks for basic auth,
as a production Prometheus behind a proxy would.

    server = PrometheusServer(tmp / "prom", sd_url=f"{sim.url}/kubesim/targets").start()
    ...  # query server.url
    server.stop()
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from slipway_sandbox._process import free_port, stop, wait_until

__all__ = ["PrometheusServer", "prometheus_binary"]


def prometheus_binary() -> str | None:
    """The `prometheus` binary on PATH (Debian: `apt-get install prometheus`), or None."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


class PrometheusServer:
    """One Prometheus process storing under `data_dir`, listening on a free loopback port."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        sd_url: str,
        port: int | None = None,
        scrape_interval_s: float = 1.0,
        basic_auth_users: Mapping[str, str] | None = None,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="slipway-prometheus-")) if data_dir is None else data_dir
        )
        self.sd_url = sd_url
        self.port = port or free_port()
        self.scrape_interval_s = scrape_interval_s
        self.basic_auth_users = dict(basic_auth_users or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        """The Prometheus configuration: kubesim's pods as targets, at the sandbox's interval."""
        interval = f"{self.scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "kubesim",
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "http_sd_configs": [{"url": self.sd_url, "refresh_interval": "1s"}],
                }
            ],
        }

    def start(self) -> PrometheusServer:
        """Start Debian's prometheus with that configuration and wait until it is ready."""
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus not found (Debian: apt-get install prometheus)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        log = self.data_dir / "prometheus.log"
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]
        if self.basic_auth_users:
            web = self.data_dir / "web.yml"
            web.write_text(yaml.safe_dump({"basic_auth_users": self.basic_auth_users}))
            cmd.append(f"--web.config.file={web}")
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._ready, process=self.process, what="prometheus", log=log, timeout=60.0)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310 — our own loopback URL
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for the basic auth it was given
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Prometheus; a directory it made itself is removed."""
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
