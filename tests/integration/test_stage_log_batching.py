"""Batched stage logs (`shared.stagelog`): lines stored together, in order, in time, and a
stage's lines stored before its `StageCompleted` (the executor flushes before appending)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from kubesim import KubeSim
from shared.db import create_pool
from shared.events.catalog import StageCompleted
from shared.stagelog import Severity, StageLogs, recordable
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import Backends
from tests.support.executor import Harness, deploy_v1
from tests.support.git_helpers import WorkRepo

NEVER_BY_TIMER = 3600.0
"""A batch window no test waits out: only an explicit flush stores the lines."""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


async def test_buffered_lines_are_stored_in_one_flush_in_order_and_published(
    backends: Backends, subjects: Subjects, nc: NatsClient
) -> None:
    live: list[dict[str, object]] = []

    async def on_line(message: Msg) -> None:
        live.append(json.loads(message.data))

    subscription = await nc.subscribe(subjects.stage_log("b1"), cb=on_line)
    logs = StageLogs(backends.store.pool, nc, subjects, batch_window_s=NEVER_BY_TIMER)
    logger = logs.for_stage("b1", "s1")
    await logger.info("one")
    await logs.write("b1", "s2", Severity.ERROR, "two\x1b[31m")
    await logger.success("three")
    assert await logs.read("b1") == [], "buffered, not stored yet"
    await logs.flush()
    stored = await logs.read("b1")
    assert [(line.stage_id, line.severity, line.message) for line in stored] == [
        ("s1", "info", "one"),
        ("s2", "error", recordable("two\x1b[31m")),  # made printable when buffered
        ("s1", "success", "three"),
    ]
    assert [line.id for line in stored] == sorted(line.id for line in stored)

    async def all_published() -> bool:
        return len(live) >= 3

    await wait_until(all_published, within_s=5, what="every flushed line published live")
    await subscription.unsubscribe()
    assert [(line["id"], line["message"]) for line in live] == [
        (line.id, line.message) for line in stored
    ]
    await logs.flush()  # nothing buffered: nothing written again
    assert len(await logs.read("b1")) == 3


async def test_a_quiet_writer_s_lines_are_stored_within_the_window(
    backends: Backends, subjects: Subjects
) -> None:
    logs = StageLogs(backends.store.pool, None, subjects, batch_window_s=0.05)
    await logs.write("b2", "s1", Severity.INFO, "waiting for approval")

    async def stored() -> bool:
        return len(await logs.read("b2")) == 1

    await wait_until(stored, within_s=5, what="the buffered line stored by the timer")


async def test_a_stage_s_lines_are_stored_before_its_completion_is_appended(
    backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path
) -> None:
    """With no timer to store them, the stage's own lines (its start, what it applied) are
    in the table before its `StageCompleted`: the runner flushes before appending."""
    harness = await Harness.over(backends, sim, work, tmp_path)
    harness.replica("x1", stage_log_batch_s=NEVER_BY_TIMER)
    async with harness.running_app():
        await deploy_v1(harness)
    recorded = await harness.store.read_stream("deployment-d1")
    completed = next(r for r in recorded if isinstance(r.event, StageCompleted))
    pool = harness.store.pool
    rows = await pool.fetch(
        "SELECT message, recorded_at FROM stage_logs WHERE deployment_id = 'd1' ORDER BY id"
    )
    messages = [row["message"] for row in rows]
    assert "- created Deployment shop/web" in messages
    assert messages[-1] == "SUCCESS: Applied 2 resources"
    work_lines = rows[:-1]  # the last is the runner's line about the completion itself
    late = [r["message"] for r in work_lines if r["recorded_at"] >= completed.recorded_at]
    assert late == [], f"stored after the stage's StageCompleted: {late}"


async def test_a_timed_flush_that_fails_is_logged_not_left_unretrieved(
    backends: Backends, subjects: Subjects
) -> None:
    """A flush started by the batch timer has no caller: a failure other than a lost
    connection (here: no `stage_logs` table in the schema) is logged as an error."""
    pool = await create_pool(backends.app_database_url, schema="pg_catalog", max_size=1)
    try:
        logs = StageLogs(pool, None, subjects, batch_window_s=0.01)
        with structlog.testing.capture_logs() as captured:
            await logs.write("b9", "s1", Severity.INFO, "lost")

            def failure_logged() -> bool:
                return any(e["event"] == "stage_log_flush_failed" for e in captured)

            await wait_until(failure_logged, within_s=5, what="the failed timed flush logged")
        [failed] = [e for e in captured if e["event"] == "stage_log_flush_failed"]
        assert failed["error_type"] == "UndefinedTableError"
    finally:
        await pool.close()
