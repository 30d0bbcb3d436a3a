"""The lifecycle of a Slipway service process: start up, run the components, shut down cleanly.

Start-up: settings → logging and tracing → health server → PostgreSQL and
NATS (retried until `startup_timeout_s`) → readiness checks → the service's
`setup`, which returns its components → all components in one TaskGroup.

A component is `async def component(stop: asyncio.Event) -> None`: it fetches
work until `stop` is set, finishes what it holds, and returns. Shutdown
starts on SIGTERM/SIGINT, on `request_stop()`, when a component crashes, or
when every component has returned, and goes in this order:

1. `stop` is set and /readyz turns 503, so no new traffic is routed here;
2. components finish in-flight work for up to `shutdown_grace_s`; any still
   running then is cancelled, and that is logged (the exit stays 0: the
   work was abandoned on purpose and will be redelivered);
3. the stop is recorded on the log (`ServiceStopped` on `service-<name>`, as
   `ServiceStarted` was once ready: shared/lifecycle.py);
4. NATS is drained (subscriptions flushed, buffered publishes sent), and the
   PostgreSQL pool is closed;
5. the health server stops, and the tracer provider flushes its spans.

Bad configuration found by `setup` (a `ConfigError`: a control config that
will not load, settings that contradict each other) ends the process with
exit 78 (EX_CONFIG), like bad settings, rather than as a crash.

A crashed component is logged with its traceback, lets its siblings finish
their in-flight work, and makes the process exit 1. In normal mode, every
component returning on its own is a failure too (a service whose loops have
all ended would look alive while doing nothing); in burst mode (tests,
one-off runs) that is how the service is meant to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.errors import ConnectionClosedError, ConnectionReconnectingError
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared.db import create_pool
from shared.errors import ConfigError, Unavailable
from shared.health import HealthServer, ReadinessCheck, new_registry
from shared.lifecycle import record_started, record_stopped, records_lifecycle
from shared.logs import configure_logging, get_logger
from shared.natsconnect import connect_options
from shared.redaction import REDACTOR
from shared.settings import ServiceSettings, SettingsError, load_settings, secret_values
from shared.subjects import Subjects
from shared.tracing import configure_tracing

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "Component",
    "Outcome",
    "RunReport",
    "ServiceRuntime",
    "Setup",
    "run_service",
    "unless_stopped",
]

S = TypeVar("S", bound=ServiceSettings)
T = TypeVar("T")

Component = Callable[[asyncio.Event], Awaitable[None]]
Setup = Callable[["ServiceRuntime[S]"], Awaitable[Sequence[Component]]]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 78  # sysexits.h EX_CONFIG: what supervisors expect for bad configuration

# Bounds on the steps after the components' grace period, so a wedged
# dependency cannot hold a terminating pod until it is killed.
_NATS_DRAIN_TIMEOUT_S: Final = 5
_POOL_CLOSE_TIMEOUT_S: Final = 5.0
_RECONNECT_BACKOFF_MAX_S: Final = 5.0
_ALL_RETURNED: Final = "every component returned"
_NATS_LOGIN_SETTINGS: Final = "SLIPWAY_NATS_USER, SLIPWAY_NATS_PASSWORD(_FILE) or SLIPWAY_NATS_URL"

log = get_logger(__name__)


class Outcome(enum.Enum):
    """How a service's run ended."""

    FINISHED = "finished"
    CANCELLED = "cancelled"
    """Still busy when the grace period ended."""
    CRASHED = "crashed"


@dataclass(frozen=True)
class RunReport:
    """How a run ended: each component's outcome, and why the service failed if it did."""

    outcomes: Mapping[str, Outcome]
    stop_reason: str
    failure: str | None = None
    bad_config: bool = False
    """The failure is bad configuration, which restarting will not fix."""

    @property
    def exit_code(self) -> int:
        """The process's exit status for this outcome."""
        if self.bad_config:
            return EXIT_CONFIG
        return EXIT_FAILURE if self.failure else EXIT_OK


async def unless_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """The result of `awaitable`, or None if `stop` is set first (the awaitable is cancelled).

    For waits that must not delay shutdown: `await unless_stopped(stop, sub.next_msg(None))`.
    """
    work = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait((work,))
    return None if work.cancelled() else work.result()


class ServiceRuntime(Generic[S]):
    """Connections, health, signals and shutdown for one service process."""

    def __init__(
        self, name: str, settings: S, *, burst: bool = False, handle_signals: bool = True
    ) -> None:
        self.name = name
        self.settings = settings
        self.burst = burst
        self.handle_signals = handle_signals
        self.stop = asyncio.Event()
        self.metrics: CollectorRegistry = new_registry()
        self.subjects = Subjects(settings.subject_prefix)
        self.health: HealthServer | None = None
        self._pool: asyncpg.Pool | None = None
        self._nc: NatsClient | None = None
        self._stop_reason = ""
        self._records_lifecycle = records_lifecycle(name)

    @property
    def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool, once connected."""
        if self._pool is None:
            raise RuntimeError("not connected to PostgreSQL yet")
        return self._pool

    @property
    def nc(self) -> NatsClient:
        """The NATS connection, once connected."""
        if self._nc is None:
            raise RuntimeError("not connected to NATS yet")
        return self._nc

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Make /readyz depend on `check` too (a no-op when the health server is disabled)."""
        if self.health is not None:
            self.health.add_check(name, check)

    def request_stop(self, reason: str = "stop requested") -> None:
        """Begin a graceful shutdown (the first reason given is the one reported)."""
        if not self.stop.is_set():
            self._stop_reason = reason
            self.stop.set()

    async def run(self, setup: Setup[S]) -> RunReport:
        """Start, run the components `setup` returns until shutdown, and clean up."""
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            async with contextlib.AsyncExitStack() as cleanup:
                try:
                    components = await self._start(cleanup, setup)
                except Unavailable as exc:
                    log.error("startup_failed", error=str(exc))
                    return RunReport({}, "startup failed", failure=str(exc))
                except ConfigError as exc:
                    log.error("config_invalid", error=str(exc))
                    return RunReport({}, "startup failed", failure=str(exc), bad_config=True)
                if components is None:
                    log.info("stopped_during_startup", reason=self._stop_reason)
                    return RunReport({}, self._stop_reason)
                return await self._run_components(components)
        finally:
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("signal_ignored_while_stopping", signal=sig.name)
            return
        log.info("signal_received", signal=sig.name)
        self.request_stop(sig.name)

    async def _start(
        self, cleanup: contextlib.AsyncExitStack, setup: Setup[S]
    ) -> Sequence[Component] | None:
        """Connect and set up; None if a stop came first. Registers every cleanup as it goes."""
        settings = self.settings
        log.info(
            "service_starting",
            database=_without_password(settings.database_url),
            schema=settings.database_schema,
            nats=_without_password(settings.nats_url),
            burst=self.burst,
        )
        if settings.health_port >= 0:
            self.health = HealthServer(
                host=settings.health_host, port=settings.health_port, registry=self.metrics
            )
            await self.health.start()
            cleanup.push_async_callback(self.health.stop)
        try:
            async with asyncio.timeout(settings.startup_timeout_s):
                self._pool = await unless_stopped(self.stop, self._connect_postgres())
                if self._pool is None:
                    return None
                cleanup.push_async_callback(_close_pool, self._pool)
                self._nc = await unless_stopped(self.stop, self._connect_nats())
                if self._nc is None:
                    return None
                cleanup.push_async_callback(_drain_nats, self._nc)
        except TimeoutError as exc:
            raise Unavailable(
                f"PostgreSQL and NATS not reachable within {settings.startup_timeout_s:g} s"
            ) from exc
        self.add_readiness_check("postgres", self._postgres_ready)
        self.add_readiness_check("nats", self._nats_ready)
        components = await unless_stopped(self.stop, setup(self))
        if components is not None and not components:
            raise ValueError(f"setup of {self.name} returned no components")
        return components

    async def _run_components(self, components: Sequence[Component]) -> RunReport:
        outcomes: dict[str, Outcome] = {}
        grace = self.settings.shutdown_grace_s
        if self._records_lifecycle:
            # Set up and about to run: recorded before any component's work, so a
            # started service's first effects never precede its start on the log.
            await record_started(self.pool, self.name, self.settings.instance)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._supervise(name, component, outcomes), name=name)
                for name, component in _named(components)
            ]
            group.create_task(self._stop_when_all_returned(tasks))
            if self.health is not None:
                self.health.mark_running()
            log.info("service_started", components=[t.get_name() for t in tasks])

            await self.stop.wait()
            self._stop_reason = self._stop_reason or "stop event set"
            if self.health is not None:
                self.health.mark_stopping()
            log.info("shutdown_started", reason=self._stop_reason, grace_s=grace)
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()

        crashed = sorted(name for name, outcome in outcomes.items() if outcome is Outcome.CRASHED)
        failure = None
        if crashed:
            failure = f"component crashed: {', '.join(crashed)}"
        elif self._stop_reason == _ALL_RETURNED and not self.burst:
            failure = "every component returned before a stop was requested"
        if failure:
            log.error("service_failed", reason=failure)
        if self._records_lifecycle:
            await record_stopped(
                self.pool,
                self.name,
                self.settings.instance,
                reason=self._stop_reason,
                crashed=failure is not None,
            )
        return RunReport(outcomes, self._stop_reason, failure)

    async def _supervise(
        self, name: str, component: Component, outcomes: dict[str, Outcome]
    ) -> None:
        try:
            await component(self.stop)
        except asyncio.CancelledError:
            outcomes[name] = Outcome.CANCELLED
            log.warning(
                "component_cancelled",
                component=name,
                reason=f"in-flight work outlasted the {self.settings.shutdown_grace_s:g} s grace",
            )
            raise
        # The top of the service: a crash is logged once here and turned into
        # a graceful stop, so sibling components still finish their work; the
        # failure then decides the exit code.
        except Exception:
            outcomes[name] = Outcome.CRASHED
            log.exception("component_crashed", component=name)
            self.request_stop(f"component {name} crashed")
        else:
            outcomes[name] = Outcome.FINISHED
            log.info("component_finished", component=name)

    async def _stop_when_all_returned(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        await asyncio.wait(list(tasks))
        self.request_stop(_ALL_RETURNED)

    async def _connect_postgres(self) -> asyncpg.Pool:
        delay = 0.1
        while True:
            try:
                return await create_pool(
                    self.settings.database_url,
                    schema=self.settings.database_schema,
                    min_size=1,
                    max_size=self.settings.database_pool_size,
                    statement_timeout_s=self.settings.database_statement_timeout_s,
                    idle_in_transaction_timeout_s=(
                        self.settings.database_idle_in_transaction_timeout_s
                    ),
                )
            except Unavailable as exc:
                log.warning("postgres_unavailable", error=str(exc), retry_in_s=delay)
            # Back-off between attempts; `startup_timeout_s` bounds the whole loop.
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_BACKOFF_MAX_S)

    async def _connect_nats(self) -> NatsClient:
        # Before the first attempt: a bad credential setting is a ConfigError, not a retry.
        options = connect_options(self.settings, self.name)
        nc = NatsClient()

        async def on_error(exc: Exception) -> None:
            error = f"{type(exc).__name__}: {exc}"
            if "authorization violation" in error.lower():
                # Retried like an outage (the server may be rolling out new passwords),
                # but the operator is told which settings to look at.
                log.warning("nats_login_refused", error=error, settings=_NATS_LOGIN_SETTINGS)
                return
            log.warning("nats_error", error=error)

        async def on_disconnected() -> None:
            log.warning("nats_disconnected")

        async def on_reconnected() -> None:
            log.info("nats_reconnected", server=_server_of(nc))

        async def on_closed() -> None:
            log.info("nats_closed")

        try:
            await nc.connect(
                self.settings.nats_url,
                name=f"{self.name}@{self.settings.instance}",
                # Never give up: a NATS restart must not take every service down
                # with it. Readiness reports the outage meanwhile.
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                drain_timeout=_NATS_DRAIN_TIMEOUT_S,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
                **options,
            )
        except BaseException:
            # Cancelled by the start-up deadline or a stop: don't leave its
            # reconnect loop running behind us.
            await nc.close()
            raise
        log.info("nats_connected", server=_server_of(nc))
        return nc

    async def _postgres_ready(self) -> tuple[bool, str]:
        await self.pool.fetchval("SELECT 1")
        return True, "SELECT 1 answered"

    async def _nats_ready(self) -> tuple[bool, str]:
        nc = self.nc
        if nc.is_connected:
            return True, f"connected to {_server_of(nc)}"
        return False, "reconnecting" if nc.is_reconnecting else "not connected"


def run_service(
    name: str,
    settings_cls: type[S],
    setup: Setup[S],
    *,
    env: Mapping[str, str] | None = None,
    burst: bool = False,
) -> int:
    """Run the service `name` until it stops; the process exit code (`raise SystemExit(...)`)."""
    try:
        settings = load_settings(settings_cls, env)
    except SettingsError as exc:
        configure_logging(name)
        log.error("settings_invalid", settings=exc.settings_name, problems=list(exc.problems))
        return EXIT_CONFIG
    configure_logging(name, settings.log_level, settings.log_format, instance=settings.instance)
    # Its own credentials (the database's and NATS' passwords) are masked in every log line.
    REDACTOR.add(*secret_values(settings), pinned=True)
    provider: TracerProvider = configure_tracing(name)
    try:
        report = asyncio.run(ServiceRuntime(name, settings, burst=burst).run(setup))
    # The top of the process: log the traceback as one structured line (not a
    # bare traceback on stderr that log shippers split apart), then exit 1.
    except Exception:
        log.exception("service_crashed")
        return EXIT_FAILURE
    finally:
        # Last, so spans from the shutdown itself are exported too.
        provider.shutdown()
    outcomes = {component: outcome.value for component, outcome in report.outcomes.items()}
    log.info("service_stopped", exit_code=report.exit_code, outcomes=outcomes)
    return report.exit_code


def _named(components: Sequence[Component]) -> list[tuple[str, Component]]:
    """Each component with a readable name, unique within the service."""
    named: list[tuple[str, Component]] = []
    seen: dict[str, int] = {}
    for component in components:
        target = getattr(component, "func", component)  # functools.partial
        base = str(getattr(target, "__name__", None) or type(target).__name__)
        seen[base] = seen.get(base, 0) + 1
        named.append((base if seen[base] == 1 else f"{base}#{seen[base]}", component))
    return named


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), _POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("postgres_pool_close_timed_out", timeout_s=_POOL_CLOSE_TIMEOUT_S)
        pool.terminate()


async def _drain_nats(nc: NatsClient) -> None:
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except (ConnectionReconnectingError, ConnectionClosedError):
        # Nothing can be flushed to a server we are not connected to.
        await nc.close()
    log.info("nats_drained")


def _server_of(nc: NatsClient) -> str:
    url = nc.connected_url
    return url.netloc.rsplit("@", 1)[-1] if url is not None else "?"


def _without_password(url: str) -> str:
    """`url` with any password masked, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
