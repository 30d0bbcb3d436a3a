"""A replay of `applications` holds the sync states in memory (`SyncHeld`): same table.

The live runner reads, folds and writes an application's sync state in every batch it
appears in; a replay holds it across the log's windows and writes it once. The tables
must not tell the two apart, over a log with every kind of sync event, a deleted and
re-registered application, and flushes forced in the middle of the replay.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import pytest

from benchmarks._history import deployment_events
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationAdopted,
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationRegistered,
    ApplicationSyncStateChanged,
    DeploymentPlanFailed,
    DeploymentTriggered,
    PlannedStage,
)
from shared.projections import ProjectionRunner, replay
from shared.projections.applications import ApplicationsProjection, SyncHeld

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SYNC = (PlannedStage(id="stage-0", name=vocabulary.StageName.K8S_SYNC, index=0),)
APPS = [f"held{n}" for n in range(6)]


class HeldBriefly(ApplicationsProjection):
    """`applications`, whose replay flushes whenever it holds more than `limit` states."""

    def __init__(self, table: str, limit: int) -> None:
        super().__init__(table)
        self.limit = limit

    def replay_buffer(self) -> SyncHeld:
        return SyncHeld(self, limit=self.limit)


def _registered(app: str) -> ApplicationRegistered:
    return ApplicationRegistered(
        application_id=app, name=app, repository_id="config", path=f"apps/{app}"
    )


async def _append(store: EventStore, stream: str, events: list[Event]) -> None:
    await store.append(stream, new_events(events), expected_version=ANY)


async def _write_history(store: EventStore) -> None:
    """Rounds of deployments over every application, with the rarer events between them."""
    for app in APPS:
        await _append(store, f"application-{app}", [_registered(app)])
    n = 0
    for round_ in range(4):
        for app in APPS:
            n += 1
            # n = 20 fails (FAILING_EVERY), the others succeed.
            await _append(store, f"deployment-d{n}", deployment_events(f"d{n}", app, SYNC, T0, n))
        lead = APPS[round_]
        await _append(
            store,
            f"drift-{lead}",
            [
                ApplicationSyncStateChanged(
                    application_id=lead, state=vocabulary.SyncState.OUT_OF_SYNC, summary="drift"
                )
            ],
        )
        n += 1
        await _append(
            store,
            f"deployment-d{n}",
            [
                DeploymentTriggered(
                    deployment_id=f"d{n}",
                    application_id=lead,
                    trigger=vocabulary.Trigger.ON_COMMIT,
                    commit_hash=f"{n:040x}",
                ),
                DeploymentPlanFailed(deployment_id=f"d{n}", application_id=lead, reason="bad"),
            ],
        )
        if round_ == 1:
            # Deleted with a sync state held (a drift report in it, which no later deployment
            # replaces), then registered again: it starts afresh.
            await _append(
                store,
                f"drift-{APPS[5]}",
                [
                    ApplicationSyncStateChanged(
                        application_id=APPS[5], state=vocabulary.SyncState.SYNCED, summary="ok"
                    )
                ],
            )
            await _append(
                store, f"application-{APPS[5]}", [ApplicationDeleted(application_id=APPS[5])]
            )
            await _append(store, f"application-{APPS[5]}", [_registered(APPS[5])])
            await _append(
                store,
                f"application-{APPS[4]}",
                [ApplicationAdopted(application_id=APPS[4], running_commit_hash="a" * 40)],
            )
        if round_ == 2:
            await _append(
                store, f"application-{APPS[3]}", [ApplicationDisabled(application_id=APPS[3])]
            )
    # Triggered and never ended: DEPLOYING, with one more queued.
    for k in (1, 2):
        await _append(
            store,
            f"deployment-q{k}",
            [
                DeploymentTriggered(
                    deployment_id=f"q{k}",
                    application_id=APPS[0],
                    trigger=vocabulary.Trigger.ON_COMMIT,
                    commit_hash=f"{k:040x}",
                )
            ],
        )


async def _rows(pool: asyncpg.Pool, view: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch(f'SELECT * FROM "{view}" ORDER BY 1')]


@pytest.mark.parametrize("limit", [50_000, 1], ids=["held-throughout", "flushed-each-window"])
async def test_a_replay_holding_sync_states_builds_the_table_the_live_runner_builds(
    store: EventStore, projector_store: EventStore, limit: int
) -> None:
    await _write_history(store)
    live = ApplicationsProjection(f"apps_live_{limit}")
    await ProjectionRunner(projector_store, live, batch_size=5).run_until_caught_up()

    rebuilt = HeldBriefly(f"apps_held_{limit}", limit)
    await ProjectionRunner(projector_store, rebuilt).run_until_caught_up()
    # Many windows: the states are held across them.
    result = await replay(projector_store, rebuilt, batch_size=7)

    assert result.events > 100
    rows = await _rows(projector_store.pool, rebuilt.name)
    assert rows == await _rows(projector_store.pool, live.name)
    states = {row[0]: row[-2] for row in rows}  # application_id, …, sync_state, sync
    # The history reaches every state, so the comparison above compares something.
    assert states[APPS[0]] == "DEPLOYING"
    assert {"SYNCED", "OUT_OF_SYNC"} <= set(states.values())
    assert states[APPS[5]] != "UNKNOWN"  # its deployments after the re-registration count
    # What came before its deletion does not.
    assert json.loads(str(rows[APPS.index(APPS[5])][-1]))["drift"] is None
