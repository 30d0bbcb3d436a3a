"""Fault test: the database connection dies as the notifier records a delivery (a PostgreSQL
restart, a reset): the record is retried, and the notification is not sent a second time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from services.notifier.delivery import DeliveryWorker
from services.notifier.outbox import Outbox
from services.notifier.service import CONSUMER_NAME, Notifier
from services.notifier.targets import targets_of
from shared.consumer import EventConsumer
from shared.db import create_pool
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import DeploymentTriggered
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.notifier import FAST_RETRIES, receivers, recorded, settle, write_config
from tests.support.tcp_proxy import PostgresCutProxy


def _commit(kind: bytes, body: bytes) -> bool:
    return kind == b"Q" and body.upper().startswith(b"COMMIT")


async def test_a_record_cut_off_by_the_database_is_retried_not_sent_again(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]}],
        )
        targets = targets_of(control)
        await backends.ensure_event_stream()
        database = urlsplit(backends.app_database_url)
        assert database.hostname is not None and database.port is not None
        async with PostgresCutProxy(database.hostname, database.port) as proxy:
            # The worker's connections only: its first COMMIT is the record of the delivery,
            # and it never reaches the server (rolled back, as in a restart).
            proxy.arm(_commit, when="before")
            pool = await create_pool(
                proxy.url(backends.app_database_url), schema=backends.schema, max_size=2
            )
            worker = DeliveryWorker(
                outbox=Outbox(EventStore(pool, store.registry), "n1", lease_s=5.0),
                targets=targets,
                policy=FAST_RETRIES,
                http_timeout_s=2.0,
                poll_s=0.1,
            )
            notifier = Notifier(
                store=store,
                routes=control.spec.notifications.routes,
                targets=targets,
                web_url=control.spec.web_address,
            )
            consumer = EventConsumer(
                name=CONSUMER_NAME,
                js=backends.nc.jetstream(),
                pool=store.pool,
                registry=store.registry,
                subjects=backends.subjects,
                handler=notifier.handle,
                fetch_timeout_s=0.2,
            )
            try:
                async with running(backends.relay().run, consumer.run, worker.run):
                    triggered = DeploymentTriggered(
                        deployment_id="d1",
                        application_id="web1",
                        trigger=vocabulary.Trigger("on_commit"),
                        commit_hash="feedface00112233",
                    )
                    await store.append(
                        "deployment-d1", new_events([triggered]), expected_version=ANY
                    )
                    await wait_until(
                        recorded(store, "notification_delivered", 1),
                        within_s=20,
                        what="the delivery recorded",
                    )
                    await settle()
            finally:
                await pool.close()
            assert proxy.cut.is_set(), "the record's COMMIT was never cut"

    (delivery_id,) = server.counts("/hook")
    assert server.counts("/hook") == Counter({delivery_id: 1})
