"""`slipway deadletters list|show|redrive`, through the real CLI, against a running consumer."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.relay.relay import Relay
from shared.consumer import EventConsumer
from shared.eventlog import ANY, EventStore, new_events
from shared.events import RecordedEvent
from shared.events.catalog import ApplicationDisabled
from shared.messaging import headers_for
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import running
from tests.support.paths import REPO_ROOT
from tests.support.relay import consumer_of, counting_handler

ROOT = REPO_ROOT


async def slipway(url: str, schema: str, *args: str) -> tuple[int, str, str]:
    """Run `slipway deadletters …` as its own process (without blocking the consumers here)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        "deadletters",
        "--schema",
        schema,
        *args,
        cwd=ROOT,
        env={**os.environ, "SLIPWAY_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.usefixtures("counts_table")
async def test_a_redriven_dead_letter_is_handled_once_by_its_consumer(
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    relay: Relay,
    app_database_url: str,
    schema: str,
) -> None:
    """Dead-lettered by a bug; list and show it; once fixed, redrive: handled exactly once."""
    broken = True

    async def handler(event: RecordedEvent, conn: asyncpg.Connection) -> None:
        if broken:
            raise RuntimeError("bug in the handler")
        await counting_handler(event, conn)

    def consumer(name: str) -> EventConsumer:
        return consumer_of(
            nc.jetstream(),
            store,
            subjects,
            handler,
            name=name,
            max_deliver=2,
            backoff_s=(0.05,),
            redrive_poll_s=0.1,
        )

    victim, bystander = consumer("victim"), consumer("bystander")
    await store.append(
        "application-r", new_events([ApplicationDisabled(application_id="r")]), expected_version=ANY
    )
    async with running(relay.run, victim.run, bystander.run):
        await wait_until(
            lambda: victim.stats.dead_lettered + bystander.stats.dead_lettered == 2,
            what="the event dead-lettered by both consumers",
        )
        code, out, err = await slipway(
            app_database_url, schema, "--json", "list", "--consumer", "victim"
        )
        assert code == 0, err
        [listed] = [json.loads(line) for line in out.splitlines()]
        assert listed["state"] == "dead"
        assert listed["error"] == "RuntimeError: bug in the handler"
        letter_id = listed["id"]

        code, out, err = await slipway(app_database_url, schema, "show", str(letter_id), "--json")
        assert code == 0, err
        shown = json.loads(out)
        assert shown["headers"]["Slipway-Stream-Id"] == "application-r"
        assert json.loads(shown["data"])["application_id"] == "r"

        broken = False
        code, out, err = await slipway(app_database_url, schema, "redrive", str(letter_id))
        assert (code, out) == (0, f"redrive requested\t{letter_id}\n"), err
        await wait_until(lambda: victim.stats.redriven == 1, what="the letter redriven")

        code, out, err = await slipway(app_database_url, schema, "redrive", str(letter_id))
        assert code == 1
        assert f"already redriven): {letter_id}" in err

    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1
    assert bystander.stats.redriven == 0
    code, out, err = await slipway(app_database_url, schema, "list", "--state", "redriven")
    assert code == 0, err
    assert out.split("\t")[:3] == [str(letter_id), "redriven", "victim"]
    code, out, err = await slipway(app_database_url, schema, "list", "--state", "dead")
    assert [line.split("\t")[1:3] for line in out.splitlines()] == [["dead", "bystander"]]


@pytest.mark.usefixtures("counts_table")
async def test_redriving_an_event_the_inbox_already_has_does_not_handle_it_again(
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    relay: Relay,
    app_database_url: str,
    schema: str,
) -> None:
    """A letter whose event was handled after all (a redelivery won): redrive only settles it."""
    consumer = consumer_of(
        nc.jetstream(),
        store,
        subjects,
        counting_handler,
        name="counter",
        redrive_poll_s=0.1,
    )
    await store.append(
        "application-h", new_events([ApplicationDisabled(application_id="h")]), expected_version=ANY
    )
    async with running(relay.run, consumer.run):
        await wait_until(lambda: consumer.stats.handled == 1, what="the event handled")
        row = await store.pool.fetchrow("SELECT * FROM events WHERE stream_id = 'application-h'")
        letter_id = await store.pool.fetchval(
            "INSERT INTO dead_letters (consumer, subject, stream_seq, deliveries, headers, data, "
            "error) VALUES ('counter', 'x', 1, 5, $1::jsonb, $2, 'RuntimeError: flaky') "
            "RETURNING id",
            json.dumps(headers_for(row)),
            bytes(row["payload"]),
        )
        code, _, err = await slipway(app_database_url, schema, "redrive", "--all-of", "counter")
        assert code == 0, err
        await wait_until(lambda: consumer.stats.redriven == 1, what="the letter redriven")
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1
    assert await store.pool.fetchval(
        "SELECT redriven_at IS NOT NULL FROM dead_letters WHERE id = $1", letter_id
    )
