"""A pod on the network against NATS (DESIGN §14): no door without a password, each service's
user confined to its role's subjects, and a forged event on the wire causes nothing.

The permission tests run their own nats-server (the sandbox's, with every service's user);
the forged-event tests publish with the session's admin user, as an attacker holding the
relay's publishing rights would, and check the consumers act only on what the log holds.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import structlog
from nats.aio.client import Client as NatsClient

from kubesim import KubeSim
from services.analysis.service import CONSUMER_NAME as ANALYSIS_CONSUMER
from services.executor.service import CONSUMER_NAME as EXECUTOR_CONSUMER
from services.gitwatcher.chains import CONSUMER as CHAINS_CONSUMER
from services.gitwatcher.eventwatcher import EventWatcher
from services.gitwatcher.service import Gitwatcher
from services.notifier.service import CONSUMER_NAME as NOTIFIER_CONSUMER
from services.planner.service import CONSUMER_NAME as PLANNER_CONSUMER
from services.relay.relay import Relay
from shared.config import load_application_config
from shared.consumer import EventConsumer
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
)
from shared.messaging import ensure_event_stream, headers_for
from shared.natsauth import ROLES, inbox_prefix
from shared.planning import Strategy, build_stages, spec_from_config
from shared.runtime import Component, ServiceRuntime
from shared.settings import ServiceSettings
from shared.subjects import Subjects
from shared.testing import wait_until
from slipway_sandbox import NatsServer
from slipway_sandbox.stack import ALL_SERVICES
from tests.support import Backends, running
from tests.support.executor import APP, APP_PATH, Harness, app_files, deploy_v1
from tests.support.git_helpers import WorkRepo
from tests.support.notifier import notification_events, notifier_running, receivers, write_config

SUBJECTS = Subjects()  # the layout the sandbox's users are made for
WAIT_S = 30.0


@pytest.fixture
def server() -> Iterator[NatsServer]:
    """A nats-server of this test's own, as the sandbox runs it."""
    with NatsServer() as running_server:
        yield running_server


def address(server: NatsServer) -> str:
    """The server's URL with no credentials at all."""
    return f"nats://127.0.0.1:{server.port}"


class Client:
    """A NATS connection that keeps the asynchronous errors the server sends it."""

    def __init__(self) -> None:
        self.nc = NatsClient()
        self.errors: list[str] = []

    async def connect(self, url: str, **options: Any) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        await self.nc.connect(
            url, error_cb=on_error, allow_reconnect=False, connect_timeout=2, **options
        )
        return self

    def refused(self, subject: str) -> bool:
        return any("permissions violation" in e and subject.lower() in e for e in self.errors)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.nc.close()


async def connect_as(
    clients: list[Client], server: NatsServer, user: str, *, own_inbox: bool = True
) -> Client:
    options = {"inbox_prefix": inbox_prefix(user)} if own_inbox else {}
    client = await Client().connect(server.url_for(user), **options)
    clients.append(client)
    return client


async def stored_messages(server: NatsServer) -> int:
    admin = await nats.connect(server.url)
    try:
        info = await admin.jetstream().stream_info(SUBJECTS.events_stream)
        return int(info.state.messages)
    finally:
        await admin.close()


async def make_stream(server: NatsServer) -> None:
    admin = await nats.connect(server.url)
    try:
        await ensure_event_stream(admin.jetstream(), SUBJECTS)
    finally:
        await admin.close()


# --- who may connect ------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["", "relay:wrong-password@", "nobody:nothing@"])
async def test_no_connection_without_a_valid_password(server: NatsServer, credentials: str) -> None:
    """A client without credentials, with a wrong password or an unknown user cannot connect."""
    url = address(server).replace("nats://", f"nats://{credentials}")
    client = Client()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await client.connect(url, max_reconnect_attempts=0)
    finally:
        await client.nc.close()


async def test_unauthenticated_publish_never_reaches_the_event_stream(server: NatsServer) -> None:
    """Publishing an event subject without logging in stores nothing in the events stream."""
    await make_stream(server)
    attacker = NatsClient()
    try:
        await attacker.connect(address(server), allow_reconnect=False, connect_timeout=2)
        # What the old, open server allowed:
        await attacker.publish(SUBJECTS.event("deployment-evil", "deployment_planned"), b"{}")
        await attacker.flush()
    except nats.errors.Error:
        pass
    finally:
        await attacker.close()
    assert await stored_messages(server) == 0


# --- what each service's user may do --------------------------------------------------------


@pytest.mark.parametrize("user", [r.name for r in ROLES if not r.publishes_events])
async def test_only_the_relay_may_publish_event_subjects(
    server: NatsServer, clients: list[Client], user: str
) -> None:
    """Every service's user but the relay's is refused an event subject; the relay's is not."""
    await make_stream(server)
    subject = SUBJECTS.event("deployment-evil", "deployment_planned")
    service = await connect_as(clients, server, user)
    await service.nc.publish(subject, b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())})
    await service.nc.flush()
    await wait_until(lambda: service.refused(subject), what=f"{user} refused {subject}")
    assert await stored_messages(server) == 0

    relay = await connect_as(clients, server, "relay")
    await relay.nc.jetstream().publish(subject, b"{}")
    assert await stored_messages(server) == 1


@pytest.mark.parametrize("user", [r.name for r in ROLES if not r.publishes_stage_logs])
async def test_only_the_executor_and_analysis_may_write_live_stage_logs(
    server: NatsServer, clients: list[Client], user: str
) -> None:
    """A stage-log line from any other service's user never reaches a follower (the API)."""
    subject = SUBJECTS.stage_log("d1")
    api = await connect_as(clients, server, "api")
    lines: list[bytes] = []

    async def keep(message: Any) -> None:
        lines.append(message.data)

    await api.nc.subscribe(subject, cb=keep)
    await api.nc.flush()
    writer = await connect_as(clients, server, user)
    await writer.nc.publish(subject, b"forged line")
    await writer.nc.flush()
    await wait_until(lambda: writer.refused(subject), what=f"{user} refused {subject}")
    await api.nc.flush()
    assert lines == []


async def test_a_consumer_cannot_read_other_subjects_or_take_over_another_consumer(
    server: NatsServer, clients: list[Client]
) -> None:
    """The executor's user may not subscribe to event subjects or to every inbox, create or
    delete another service's durable consumer, or delete the stream."""
    await make_stream(server)
    executor = await connect_as(clients, server, "executor")
    nc = executor.nc
    for subject in (SUBJECTS.all_events, "_INBOX.>", SUBJECTS.all_stage_logs):
        await nc.subscribe(subject)
    stream = SUBJECTS.events_stream
    for subject in (
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{NOTIFIER_CONSUMER}",
        f"$JS.API.CONSUMER.DELETE.{stream}.{NOTIFIER_CONSUMER}",
        f"$JS.API.STREAM.DELETE.{stream}",
        f"$JS.API.STREAM.PURGE.{stream}",
    ):
        await nc.publish(subject, b"{}")
    await nc.flush()
    for refused in (
        SUBJECTS.all_events,
        "_INBOX.>",
        SUBJECTS.all_stage_logs,
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{NOTIFIER_CONSUMER}",
        f"$JS.API.STREAM.DELETE.{stream}",
    ):
        await wait_until(
            functools.partial(executor.refused, refused), what=f"executor refused {refused}"
        )
    admin = await nats.connect(server.url)
    try:
        await admin.jetstream().stream_info(stream)  # still there
    finally:
        await admin.close()


async def test_every_service_runs_its_part_with_its_own_user(
    server: NatsServer, clients: list[Client], store: EventStore, app_database_url: str, schema: str
) -> None:
    """With only their roles' permissions, the relay publishes the log, each consumer pulls,
    acks and inspects its own durable, the executor publishes stage logs and the API follows them
    (the permission set is enough, not only small)."""
    relay_client = await connect_as(clients, server, "relay")
    relay = Relay(
        database_url=app_database_url,
        schema=schema,
        js=relay_client.nc.jetstream(),
        subjects=SUBJECTS,
        idle_sleep_s=0.05,
    )
    handled: dict[str, int] = {}
    consumers: list[EventConsumer] = []
    for role in ROLES:
        for durable in role.durables:
            client = await connect_as(clients, server, role.name)
            js = client.nc.jetstream()
            # Consumers start before the relay made the stream: they may create it.
            await ensure_event_stream(js, SUBJECTS)

            async def count(
                _event: RecordedEvent, _conn: asyncpg.Connection, d: str = durable
            ) -> None:
                handled[d] = handled.get(d, 0) + 1

            several = durable == EXECUTOR_CONSUMER  # one filter, and several, both work
            handles = [ApplicationDisabled, *([ApplicationEnabled] if several else [])]
            consumers.append(
                EventConsumer(
                    name=durable,
                    js=js,
                    pool=store.pool,
                    registry=store.registry,
                    subjects=SUBJECTS,
                    handler=count,
                    handles=handles,
                    fetch_timeout_s=0.2,
                )
            )
    await ensure_event_stream(relay_client.nc.jetstream(), SUBJECTS, reconcile=True)
    durables = [c.name for c in consumers]
    async with running(relay.run, *(c.run for c in consumers)):
        await store.append(
            "application-a1",
            new_events([ApplicationDisabled(application_id="a1")]),
            expected_version=ANY,
        )
        await wait_until(
            lambda: all(handled.get(d) == 1 for d in durables),
            within_s=WAIT_S,
            what=lambda: f"every consumer handled the event once: {handled}",
        )
        # The handler counts before the consumer acks: wait for the ack, not only the count.
        for consumer in consumers:

            async def acked(c: EventConsumer = consumer) -> bool:
                info = await c.js.consumer_info(SUBJECTS.events_stream, c.name)
                pending: int = info.num_ack_pending
                return pending == 0

            await wait_until(acked, within_s=WAIT_S, what=f"{consumer.name} acked its message")

    api = await connect_as(clients, server, "api")
    lines: list[bytes] = []

    async def keep(message: Any) -> None:
        lines.append(message.data)

    await api.nc.subscribe(SUBJECTS.stage_log("d1"), cb=keep)
    await api.nc.flush()
    for writer in ("executor", "analysis"):
        client = await connect_as(clients, server, writer)
        await client.nc.publish(SUBJECTS.stage_log("d1"), writer.encode())
        await client.nc.flush()
    await wait_until(lambda: len(lines) == 2, what="the API received both stage-log lines")
    assert not any(c.errors for c in clients), [c.errors for c in clients]


def test_roles_cover_every_service_and_name_its_durable_consumers() -> None:
    """The role table has one role per service, and each durable consumer a service makes is
    its role's (a renamed consumer would otherwise be refused at start)."""
    assert [r.name for r in ROLES] == list(ALL_SERVICES)
    gitwatcher_default = inspect.signature(Gitwatcher.sync_consumer).parameters["name"].default
    event_watcher = inspect.signature(EventWatcher.consumer).parameters["name"].default
    expected = {
        "gitwatcher": (gitwatcher_default, event_watcher, CHAINS_CONSUMER),
        "planner": (PLANNER_CONSUMER,),
        "executor": (EXECUTOR_CONSUMER,),
        "analysis": (ANALYSIS_CONSUMER,),
        "notifier": (NOTIFIER_CONSUMER,),
    }
    assert {r.name: r.durables for r in ROLES if r.durables} == expected


# --- credentials reach a service through settings, and never its logs ----------------------


@pytest.mark.parametrize("how", ["user and password", "password file", "url"])
async def test_service_logs_in_from_its_settings_and_never_logs_the_password(
    server: NatsServer, app_database_url: str, schema: str, tmp_path: Path, how: str
) -> None:
    """A service connects as its user from SLIPWAY_NATS_USER + _PASSWORD, _PASSWORD_FILE or the
    URL, and no log line carries the password."""
    password = server.passwords["executor"]
    nats_settings: dict[str, str] = {"nats_url": address(server)}
    if how == "user and password":
        nats_settings |= {"nats_user": "executor", "nats_password": password}
    elif how == "password file":
        secret = tmp_path / "nats-password"
        secret.write_text(password + "\n")
        nats_settings |= {"nats_user": "executor", "nats_password_file": str(secret)}
    else:
        nats_settings["nats_url"] = server.url_for("executor")
    settings = ServiceSettings(
        database_url=app_database_url,
        database_schema=schema,
        health_port=-1,
        startup_timeout_s=10,
        **nats_settings,  # type: ignore[arg-type]
    )
    connected: list[bool] = []

    async def check(_stop: asyncio.Event) -> None:
        connected.append(runtime.nc.is_connected)

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        return [check]

    runtime = ServiceRuntime("executor", settings, burst=True, handle_signals=False)
    with structlog.testing.capture_logs() as captured:
        report = await runtime.run(setup)
    assert report.exit_code == 0, report
    assert connected == [True]
    assert password not in repr(captured)


# --- forged events --------------------------------------------------------------------------


async def forge(
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    stream_id: str,
    *events: Event,
    event_id: uuid.UUID | None = None,
) -> None:
    """Publish `events` exactly as the relay would lay them out, though the log never had them
    (or, with `event_id`, one event under the id of a logged one)."""
    js = nc.jetstream()
    for version, event in enumerate(events):
        event_type, schema_version, payload = store.registry.encode(event)
        row = {
            "event_id": event_id or uuid.uuid4(),
            "event_type": event_type,
            "schema_version": schema_version,
            "stream_id": stream_id,
            "stream_version": version,
            "global_position": 1_000_000 + version,
            "tx_id": 1_000_000,
            "recorded_at": datetime.now(UTC),
            "metadata": "{}",
        }
        await js.publish(subjects.event(stream_id, event_type), payload, headers=headers_for(row))


async def test_a_forged_failure_sends_no_notification(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A DEPLOYMENT_FAILED published onto NATS but not in the log is neither scheduled nor sent;
    a real one after it is (so the forged one was consumed, not merely late)."""
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "failures", "receiver": "hook", "events": ["DEPLOYMENT_FAILED"]}],
        )
        await store.append(
            "application-web1",
            new_events(
                [
                    ApplicationRegistered(
                        application_id="web1", name="web", repository_id="config", path="web"
                    )
                ]
            ),
            expected_version=ANY,
        )
        await backends.ensure_event_stream()

        def failed(deployment_id: str) -> list[Event]:
            return [
                DeploymentTriggered(
                    deployment_id=deployment_id,
                    application_id="web1",
                    trigger=vocabulary.Trigger("on_commit"),
                    commit_hash="feedface00112233",
                ),
                DeploymentCompleted(
                    deployment_id=deployment_id,
                    application_id="web1",
                    status=vocabulary.DeploymentStatus("FAILURE"),
                    reason=f"{deployment_id} failed",
                ),
            ]

        await forge(backends.nc, store, backends.subjects, "deployment-forged", *failed("forged"))
        async with notifier_running(control, backends):
            await store.append("deployment-real", new_events(failed("real")), expected_version=ANY)
            await wait_until(
                lambda: len(server.at("/hook")) >= 1, within_s=WAIT_S, what="the real failure sent"
            )
            await asyncio.sleep(0.5)  # anything else on its way arrives
        bodies = [json.dumps(r.body) for r in server.at("/hook")]
        assert len(bodies) == 1 and "real failed" in bodies[0], bodies
        assert not any("forged" in body for body in bodies)
        assert (await notification_events(store.pool))["notification_scheduled"] == 1


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


async def test_a_forged_plan_deploys_nothing(
    backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path
) -> None:
    """A DeploymentPlanned published onto NATS but not in the log is never registered or run;
    a real plan after it is (so the forged one was consumed, not merely late)."""
    harness = await Harness.over(backends, sim, work, tmp_path)
    commit = work.commit(app_files(tag="evil"), "evil")
    config = load_application_config(work.path / APP_PATH / ".pipe.yaml")
    stages = build_stages(
        Strategy("quick_sync"), spec_from_config(config, f"{APP_PATH}/.pipe.yaml")
    )
    await forge(
        backends.nc,
        backends.store,
        backends.subjects,
        "deployment-forged",
        DeploymentTriggered(
            deployment_id="forged",
            application_id=APP,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash=commit,
        ),
        DeploymentPlanned(
            deployment_id="forged",
            application_id=APP,
            commit_hash=commit,
            strategy=vocabulary.Strategy("quick_sync"),
            summary="forged",
            reason="forged",
            stages=stages,
            config_filename=".pipe.yaml",
            path=APP_PATH,
            repository_id="config",
        ),
    )
    async with harness.running_app():
        await deploy_v1(harness)
    executor = harness.executors[0]
    assert executor.ran == ["d1"]
    registered = await backends.store.pool.fetch("SELECT deployment_id FROM executor_leases")
    assert [r["deployment_id"] for r in registered] == ["d1"]
    assert await harness.events("forged") == []


async def test_a_refused_login_names_the_settings_and_not_the_password(
    server: NatsServer, app_database_url: str, schema: str
) -> None:
    """A wrong NATS password keeps the service from starting; the log says which settings to
    check and never shows the password tried."""
    wrong = "not-the-executor-password"
    settings = ServiceSettings(
        database_url=app_database_url,
        database_schema=schema,
        health_port=-1,
        startup_timeout_s=2,
        nats_url=address(server),
        nats_user="executor",
        nats_password=wrong,
    )

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        raise AssertionError("started without logging in")

    runtime = ServiceRuntime("executor", settings, handle_signals=False)
    with structlog.testing.capture_logs() as captured:
        report = await runtime.run(setup)
    assert report.exit_code == 1
    refused = [e for e in captured if e["event"] == "nats_login_refused"]
    assert refused and "SLIPWAY_NATS_PASSWORD" in refused[0]["settings"]
    assert wrong not in repr(captured)


async def test_a_tampered_copy_of_a_logged_event_is_acted_on_as_logged(
    backends: Backends, store: EventStore
) -> None:
    """A message published ahead of the relay under a logged event's id, with another body, is
    handled with the log's body; one naming the logged id under another stream causes nothing."""
    await backends.ensure_event_stream()
    subjects = backends.subjects

    def registered(name: str) -> ApplicationRegistered:
        return ApplicationRegistered(application_id="a1", name=name, repository_id="r", path="p")

    await store.append("application-a1", new_events([registered("web")]), expected_version=ANY)
    await store.append(
        "application-a2",
        new_events([ApplicationDisabled(application_id="a2")]),
        expected_version=ANY,
    )
    logged = {e.stream_id: e for e in await store.read_all()}
    # JetStream keeps the first message per id: these pre-empt the relay's own publishes.
    await forge(
        backends.nc,
        store,
        subjects,
        "application-a1",
        registered("evil"),
        event_id=logged["application-a1"].event_id,
    )
    await forge(
        backends.nc,
        store,
        subjects,
        "application-evil",
        ApplicationDisabled(application_id="evil"),
        event_id=logged["application-a2"].event_id,
    )
    seen: list[Event] = []

    async def keep(event: RecordedEvent, _conn: asyncpg.Connection) -> None:
        seen.append(event.event)

    consumer = EventConsumer(
        name="tamper",
        js=backends.nc.jetstream(),
        pool=store.pool,
        registry=store.registry,
        subjects=subjects,
        handler=keep,
        fetch_timeout_s=0.2,
    )

    async def drained() -> bool:
        info = await consumer.js.consumer_info(subjects.events_stream, consumer.name)
        return info.num_pending == 0 and info.num_ack_pending == 0 and bool(seen)

    await consumer.ensure()
    async with running(backends.relay().run, consumer.run):
        await wait_until(drained, within_s=WAIT_S, what="both messages consumed")
    assert seen == [registered("web")]


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca, cert, key)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    san = directory / "san.cnf"
    san.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ca_args = ["-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca"]
    server_args = ["-newkey", "rsa:2048", "-nodes", "-subj", "/CN=nats"]
    sign_args = ["-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1"]
    for args in (
        ["req", *ca_args, "-keyout", str(ca_key), "-out", str(ca)],
        ["req", *server_args, "-keyout", str(key), "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), *sign_args, "-extfile", str(san), "-out", str(cert)],
    ):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
@pytest.mark.parametrize("trusted", [True, False])
async def test_tls_setting_connects_only_to_a_server_the_ca_vouches_for(
    tmp_path: Path, app_database_url: str, schema: str, trusted: bool
) -> None:
    """With SLIPWAY_NATS_TLS_CA_FILE a service connects over TLS to a server its CA signed; with
    another CA it refuses the server (no credentials are sent to an impostor)."""
    ca, cert, key = _certificates(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca = _certificates(tmp_path / "other")[0]
    with NatsServer(tmp_path / "nats", tls=(cert, key)) as server:
        assert server.address.startswith("tls://")
        settings = ServiceSettings(
            database_url=app_database_url,
            database_schema=schema,
            health_port=-1,
            startup_timeout_s=3,
            nats_url=server.address,
            nats_user="executor",
            nats_password=server.passwords["executor"],
            nats_tls_ca_file=str(ca if trusted else other_ca),
        )

        async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
            async def connected(_stop: asyncio.Event) -> None:
                assert runtime.nc.is_connected

            return [connected]

        runtime = ServiceRuntime("executor", settings, burst=True, handle_signals=False)
        report = await runtime.run(setup)
    assert report.exit_code == (0 if trusted else 1), report
