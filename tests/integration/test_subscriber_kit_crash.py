"""The kit's example (the audit writer) started late, killed with SIGKILL mid-way and
restarted: its file ends with every event of the log exactly once, in commit order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from services.relay.relay import Relay
from shared.eventlog import EventStore
from shared.messaging import ensure_event_stream
from shared.natsauth import SUBSCRIBER_DURABLES
from shared.subjects import Subjects
from shared.testing import wait_until
from slipway_sandbox import NatsServer
from slipway_subscriber.examples.audit import AuditFile
from tests.support import running
from tests.support.paths import REPO_ROOT
from tests.support.subscriber import all_events, append_story

ROOT = REPO_ROOT


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as running_server:
        yield running_server


def lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [
        json.loads(line)["event_id"]
        for line in path.read_bytes().splitlines(keepends=True)
        if line.endswith(b"\n")
    ]


def start(server: NatsServer, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slipway_subscriber.examples.audit",
            "--out",
            str(out),
            "--nats",
            server.url_for("subscriber"),
            "--durable",
            SUBSCRIBER_DURABLES[1],
        ],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
    )


async def test_killed_mid_way_and_restarted_it_saw_every_event_once(
    server: NatsServer, store: EventStore, app_database_url: str, schema: str, tmp_path: Path
) -> None:
    admin = await nats.connect(server.url)
    layout = Subjects()
    await ensure_event_stream(admin.jetstream(), layout)
    relay = Relay(
        database_url=app_database_url, schema=schema, js=admin.jetstream(), subjects=layout
    )
    out = tmp_path / "audit.jsonl"
    process = None
    try:
        async with running(relay.run):
            for _ in range(6):  # the subscriber starts late: these were recorded before
                await append_story(store)
            before = len(await all_events(store))
            process = start(server, out)
            await wait_until(lambda: len(lines(out)) >= 15, what="the audit writer under way")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            written = len(lines(out))
            assert written < before, "killed after it had finished: not a mid-way kill"
            await append_story(store)  # while it is down
            process = start(server, out)
            expected = [str(e.event_id) for e in await all_events(store)]
            await wait_until(
                lambda: len(lines(out)) >= len(expected), within_s=60, what="every event audited"
            )
            await append_story(store)  # and after it has caught up
            expected = [str(e.event_id) for e in await all_events(store)]
            await wait_until(lambda: len(lines(out)) >= len(expected), what="the new story")
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        await admin.close()
    got = lines(out)
    assert got == expected, "every event exactly once, in commit order"


def test_the_audit_file_drops_a_line_a_crash_cut_short(tmp_path: Path) -> None:
    """Killed mid-write, the file ends in half a line: reopened, it is cut off, and the ids of
    the whole lines are known (so their events are not written twice)."""
    out = tmp_path / "audit.jsonl"
    out.write_bytes(b'{"event_id":"a"}\n{"event_id":"b"}\n{"event_id":"c"')
    audit = AuditFile(out)
    audit.close()
    assert audit.ids == {"a", "b"}
    assert out.read_bytes() == b'{"event_id":"a"}\n{"event_id":"b"}\n'
