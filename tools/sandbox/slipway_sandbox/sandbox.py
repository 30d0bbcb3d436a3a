"""The whole local sandbox, started and stopped as one: what `slipway up` and `slipway demo` run.

    async with Sandbox(options) as sandbox:   # servers, kubesim, Prometheus, receiver, services
        report = await sandbox.play()          # the seed's story (slipway_sandbox.story)

Start order: the Slack receiver (in this process), PostgreSQL and NATS (and
the migrations), kubesim, Prometheus when installed, the demo config
repository, `slipway.yaml`, an admin API key, then every service present in
the checkout (each replica its own process). Stop order is the reverse.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import asyncpg

from shared.db import create_pool
from shared.errors import SlipwayError
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from slipway_client import ApiClient
from slipway_sandbox._process import log_tail
from slipway_sandbox.control import ControlInputs, write_control_config
from slipway_sandbox.demo_repo import DemoRepo, DemoTiming, initial_files
from slipway_sandbox.kubesim_client import Kubesim
from slipway_sandbox.prometheus import PrometheusServer, prometheus_binary
from slipway_sandbox.receiver import SlackReceiver, message_lines
from slipway_sandbox.stack import ALL_SERVICES, Stack, present_services
from slipway_sandbox.story import Story, seed_story
from slipway_sandbox.storyrunner import StoryReport, StoryRunner

Say = Callable[[str], None]

# What the sandbox makes under its data directory, and removes at the next start:
# a sandbox is played from scratch every time (the story expects a fresh repository).
_OWNED: Final = (
    "postgres",
    "nats",
    "logs",
    "git",
    "repo",
    "prometheus",
    "kubesim.kubeconfig",
    "slipway.yaml",
    "env.sh",
)

DEMO_SERVICE_SETTINGS: Final = {
    # Seconds rather than minutes: the demo's deployments are small and local.
    "SLIPWAY_EXECUTOR_ROLLOUT_TIMEOUT_S": "60",
    "SLIPWAY_EXECUTOR_CLAIM_INTERVAL_S": "0.5",
    "SLIPWAY_EXECUTOR_POLL_INTERVAL_S": "0.25",
    "SLIPWAY_EXECUTOR_LEASE_TTL_S": "10",
    "SLIPWAY_PLANNER_RETRY_INTERVAL_S": "2",
    "SLIPWAY_ANALYSIS_CLAIM_INTERVAL_S": "0.5",
    "SLIPWAY_ANALYSIS_POLL_INTERVAL_S": "0.5",
    "SLIPWAY_NOTIFIER_POLL_INTERVAL_S": "0.5",
    "SLIPWAY_DRIFT_INTERVAL_S": "10",
    "SLIPWAY_SHUTDOWN_GRACE_S": "5",
}


@dataclass
class SandboxOptions:
    """How to run the sandbox: where, what to say, replicas, timings, what is required."""

    data_dir: Path
    say: Say = print
    replicas: Mapping[str, int] = field(default_factory=dict)
    timing: DemoTiming = field(default_factory=DemoTiming)
    ready_timeout_s: float = 90.0
    require_all: bool = False
    """Refuse to start unless every service and Prometheus are here (the final demo)."""
    service_settings: Mapping[str, str] = field(default_factory=dict)
    """More settings for every service process (over the demo's)."""
    customize_control: Callable[[dict[str, Any]], None] | None = None
    """Changes the generated `slipway.yaml` document before it is written."""
    event_watcher: bool = False
    """Play the image-event step: CI registers an image, the event watcher writes it back."""


class SandboxError(SlipwayError, RuntimeError):
    """The sandbox could not start; the message says what and where its log is."""


def console_sign_in_link(api_url: str, api_key: str) -> str:
    """A link that opens the console's sign-in form with `api_key` filled in (from the URL's
    fragment, by the page's own script; the fragment never reaches a server)."""
    return f"{api_url}/console/sign-in#key={api_key}"


def prometheus_available() -> bool:
    """Whether a `prometheus` binary is installed (the analysis stages need it)."""
    return prometheus_binary() is not None


class Sandbox:
    """The whole local stack (servers, kubesim, every service) and the story it plays."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.say = options.say
        data_dir = options.data_dir.resolve()
        services = present_services()
        self.present = frozenset(services)
        self.stack = Stack(
            data_dir,
            services=services,
            replicas=dict(options.replicas),
            service_settings={**DEMO_SERVICE_SETTINGS, **options.service_settings},
        )
        self.receiver = SlackReceiver(self._show_message)
        self.repo = DemoRepo(data_dir / "repo")
        self.prometheus: PrometheusServer | None = None
        self.pool: asyncpg.Pool | None = None
        self.story: Story | None = None
        self.startup_s = 0.0

    @property
    def with_analysis(self) -> bool:
        """Whether the story's analysis can run: the service is present and Prometheus is up."""
        return "analysis" in self.present and self.prometheus is not None

    def missing(self) -> list[str]:
        """What the full story needs and this checkout or machine lacks."""
        missing = [s for s in ALL_SERVICES if s not in self.present]
        if not prometheus_available():
            missing.append("prometheus (the binary; Debian package `prometheus`)")
        return missing

    async def __aenter__(self) -> Self:
        started = time.monotonic()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _start(self) -> None:
        missing = self.missing()
        if missing and self.options.require_all:
            raise SandboxError(
                "the full story needs: "
                + ", ".join(missing)
                + " (--allow-missing plays the steps this checkout can)"
            )
        self._clean()
        stack = self.stack
        await self.receiver.start()
        self.say("starting PostgreSQL and NATS (JetStream)")
        await asyncio.to_thread(stack.start_servers)
        assert stack.postgres is not None and stack.nats is not None
        self.say(
            f"  postgres    {stack.postgres.url}  (services log in as {stack.app_database_url},"
            f" the projector as {stack.projector_database_url})"
        )
        self.say(
            f"  nats        {stack.nats.address}  "
            f"(users and passwords: {stack.nats.store_dir}/credentials.json)"
        )
        kubesim = await asyncio.to_thread(stack.start_kubesim)
        self.say(f"  kubesim     {kubesim.url}  (kubeconfig {kubesim.kubeconfig})")
        if prometheus_available():
            self.prometheus = await asyncio.to_thread(self._start_prometheus, kubesim.targets_url)
            self.say(
                f"  prometheus  {self.prometheus.url}  (scraping {kubesim.targets_url} every 1 s)"
            )
        else:
            self.say("  prometheus  not installed: the prd pipeline waits instead of analysing")
        self.say(f"  slack       {self.receiver.url}  (a local receiver; it prints each message)")
        self.story = seed_story(
            self.options.timing,
            with_analysis=self.with_analysis,
            with_event_watcher=self.options.event_watcher,
        )
        files = initial_files(
            self.options.timing,
            tag="v1",
            with_analysis=self.with_analysis,
            event_watcher=self.options.event_watcher,
        )
        head = await asyncio.to_thread(
            self.repo.create, files, "account: dev and prd at v1 (the seed's layout)"
        )
        apps = ", ".join(
            sorted({path.rsplit("/", 1)[0] for path in files if "/" in path} - {".pipe"})
        )
        self.say(f"  config repo {self.repo.path}  (head {head[:10]}; {apps})")
        stack.control_config = write_control_config(
            stack.data_dir / "slipway.yaml",
            ControlInputs(
                repository_url=self.repo.url,
                kubeconfig=kubesim.kubeconfig,
                prometheus_url=self.prometheus.url if self.prometheus else None,
                slack_url=self.receiver.url,
            ),
            self.options.customize_control,
        )
        self.pool = await create_pool(stack.app_database_url, schema=stack.schema)
        stack.api_key = await self._admin_key()
        self.say("starting services: " + ", ".join(_with_replicas(stack)))
        await asyncio.to_thread(stack.start_services)
        not_ready = await asyncio.to_thread(stack.wait_ready, self.options.ready_timeout_s)
        for service in stack.processes:
            state = "ready" if service.instance not in not_ready else "NOT READY"
            pid = service.process.pid if service.process else "-"
            self.say(
                f"  {service.instance:<12} {state:<9} pid {pid}"
                f"  health {service.health_url}/readyz  log {service.log_path}"
            )
        if not_ready:
            tails = "".join(
                f"\n--- {service.log_path} (last lines)\n{log_tail(service.log_path, lines=15)}"
                for service in stack.processes
                if service.instance in not_ready
            )
            raise SandboxError(f"not ready: {', '.join(not_ready)}{tails}")
        self.say(f"  api         {stack.api_url}")
        self.say(f"  console     {stack.api_url}/console/")
        # The key rides in the fragment, which a browser never sends: no server log holds it.
        self.say(f"  sign in     {console_sign_in_link(stack.api_url, stack.api_key)}")

    def _clean(self) -> None:
        root = self.stack.data_dir
        for name in _OWNED:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _start_prometheus(self, targets_url: str) -> PrometheusServer:
        return PrometheusServer(self.stack.data_dir / "prometheus", sd_url=targets_url).start()

    async def _admin_key(self) -> str:
        """An admin API key for the CLI and the story, when the API checks keys."""
        if importlib.util.find_spec("shared.apikeys") is None:
            return ""
        assert self.pool is not None
        module = importlib.import_module("shared.apikeys")
        store = EventStore(self.pool, default_registry())
        secret: str = await module.create_api_key(store, "admin", "sandbox")
        return secret

    def api_client(self) -> ApiClient:
        """A client of the sandbox's API with its admin key."""
        return ApiClient(self.stack.api_url, key=self.stack.api_key or None)

    async def play(self) -> StoryReport:
        """Play the seed's story against the running stack; its report."""
        assert self.story is not None and self.pool is not None and self.stack.kubesim
        runner = StoryRunner(
            story=self.story,
            repo=self.repo,
            api=self.api_client(),
            kubesim=Kubesim(self.stack.kubesim.url),
            pool=self.pool,
            receiver=self.receiver,
            present=self.present,
            say=self.say,
        )
        return await runner.play()

    def restart_exited(self) -> None:
        """Restart any service process that exited, saying so."""
        for service in self.stack.restart_exited():
            self.say(f"  {service.instance} exited; restarted (restart #{service.restarts})")

    async def stop(self) -> None:
        """Stop everything it started, in reverse order."""
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        await asyncio.to_thread(self.stack.stop)
        if self.prometheus is not None:
            await asyncio.to_thread(self.prometheus.stop)
            self.prometheus = None
        await self.receiver.stop()

    def _show_message(self, message: dict[str, Any]) -> None:
        lines = message_lines(message)
        self.say("  ┌ Slack message received")
        for line in lines:
            for part in line.splitlines():
                self.say(f"  │ {part}")
        self.say("  └")


def _with_replicas(stack: Stack) -> list[str]:
    return [
        f"{name}×{stack.replicas[name]}" if stack.replicas.get(name, 1) > 1 else name
        for name in stack.services
    ]


def say_stdout(message: str) -> None:
    """Print a progress line to stdout at once (the default `say`)."""
    print(message, file=sys.stdout, flush=True)
