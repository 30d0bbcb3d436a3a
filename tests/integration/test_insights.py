"""The four DORA metrics from a hand-made history: projection, `GET /insights`, `slipway insights`.

Two weeks of three applications (two labelled env=prd, one env=dev), written
to the real log at chosen times (`tests/support/history.py`). Every figure
asserted below is worked out by hand in the comments beside the history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX
from shared.eventlog import EventStore
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationRegistered,
    CommitObserved,
    DeploymentCompleted,
    DeploymentTriggered,
)
from shared.events.vocabulary import DeploymentStatus, Trigger
from shared.projections import ProjectionRunner, replay
from shared.projections.applications import ApplicationsProjection
from shared.projections.insights import InsightsProjection
from tests.support.api import api_key_for, auth_headers, served_api
from tests.support.cli import slipway
from tests.support.history import write_history

INSIGHTS = f"{API_PREFIX}/insights"
# March 2 2026 is a Monday: week 1 is Mar 2-9, week 2 Mar 9-16.


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Day `day` of March 2026, UTC."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def _app(app_id: str, name: str, env: str) -> tuple[str, Event, datetime]:
    return (
        f"application-{app_id}",
        ApplicationRegistered(
            application_id=app_id,
            name=name,
            repository_id="config",
            path=name,
            labels=(("env", env),),
        ),
        at(1, 9),
    )


def _deploy(
    app_id: str,
    d: str,
    *,
    committed: str,
    triggered: datetime,
    ends: list[tuple[DeploymentStatus, datetime]],
    commit: str | None = None,
    trigger: Trigger = Trigger.ON_COMMIT,
) -> list[tuple[str, Event, datetime]]:
    stream = f"deployment-{d}"
    events: list[tuple[str, Event, datetime]] = [
        (
            stream,
            DeploymentTriggered(
                deployment_id=d,
                application_id=app_id,
                trigger=trigger,
                commit_hash=commit or f"commit-{d}",
                repository_id="config",
                committed_at=committed,
            ),
            triggered,
        )
    ]
    for status, when in ends:
        events.append(
            (
                stream,
                DeploymentCompleted(deployment_id=d, application_id=app_id, status=status),
                when,
            )
        )
    return events


S, F, C = DeploymentStatus.SUCCESS, DeploymentStatus.FAILURE, DeploymentStatus.CANCELLED

HISTORY: list[tuple[str, Event, datetime]] = [
    _app("web", "web-prd", "prd"),
    _app("api", "api-prd", "prd"),
    _app("dev", "web-dev", "dev"),
    # web-prd ------------------------------------------------------------------------------
    # w1: a trigger recorded before it carried the commit time: the gitwatcher's
    # observation of the commit gives it, 09:00+01:00 = 08:00Z. SUCCESS 10:00 → lead 2 h.
    (
        "repository-config",
        CommitObserved(
            repository_id="config",
            branch="main",
            commit_hash="commit-w1",
            committed_at="2026-03-02T09:00:00+01:00",
        ),
        at(2, 8, 1),
    ),
    *_deploy("web", "w1", committed="", triggered=at(2, 8, 2), ends=[(S, at(2, 10))]),
    # w2, w3 fail (a streak from Mar 3 11:00); w4 succeeds at 14:00: recovery 3 h, lead 1.5 h.
    *_deploy(
        "web", "w2", committed="2026-03-03T10:00:00Z", triggered=at(3, 10, 1), ends=[(F, at(3, 11))]
    ),
    *_deploy(
        "web",
        "w3",
        committed="2026-03-03T11:30:00Z",
        triggered=at(3, 11, 31),
        ends=[(F, at(3, 12))],
    ),
    *_deploy(
        "web",
        "w4",
        committed="2026-03-03T12:30:00Z",
        triggered=at(3, 12, 31),
        ends=[(S, at(3, 14))],
    ),
    # w5 cancelled: not counted at all.
    *_deploy(
        "web", "w5", committed="2026-03-04T08:00:00Z", triggered=at(4, 8, 1), ends=[(C, at(4, 9))]
    ),
    # w6 in week 2: lead 24 h; a second, later completion of it changes nothing.
    *_deploy(
        "web",
        "w6",
        committed="2026-03-09T10:00:00Z",
        triggered=at(9, 10, 1),
        ends=[(S, at(10, 10)), (F, at(10, 11))],
    ),
    # api-prd ------------------------------------------------------------------------------
    # a1: lead 1 h. a2 fails Mar 5 10:00; a3 succeeds Mar 11 10:00: recovery 6 days, lead 30 min.
    *_deploy(
        "api", "a1", committed="2026-03-02T12:00:00Z", triggered=at(2, 12, 1), ends=[(S, at(2, 13))]
    ),
    *_deploy(
        "api", "a2", committed="2026-03-05T09:00:00Z", triggered=at(5, 9, 1), ends=[(F, at(5, 10))]
    ),
    *_deploy(
        "api",
        "a3",
        committed="2026-03-11T09:30:00Z",
        triggered=at(11, 9, 31),
        ends=[(S, at(11, 10))],
    ),
    # web-dev ------------------------------------------------------------------------------
    # an unreadable commit time, and a drift redeploy of a commit never observed: no lead times.
    *_deploy("dev", "v1", committed="yesterday-ish", triggered=at(2, 9), ends=[(S, at(2, 10))]),
    *_deploy(
        "dev",
        "v2",
        committed="",
        triggered=at(6, 9),
        ends=[(S, at(6, 10))],
        trigger=Trigger.ON_OUT_OF_SYNC,
    ),
]

H = 3600.0


@pytest.fixture
async def api(
    store: EventStore,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
    database_url: str,
    schema: str,
) -> AsyncIterator[str]:
    await write_history(store, database_url, schema, HISTORY)
    for projection in (ApplicationsProjection(), InsightsProjection()):
        await ProjectionRunner(projector_store, projection).run_until_caught_up()
    async with served_api(store, api_pool) as url:
        yield url


async def get(url: str, **params: Any) -> tuple[int, Any]:
    query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
        http.get(INSIGHTS, params=query) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


async def test_the_four_metrics_of_env_prd_per_week_are_the_hand_computed_ones(api: str) -> None:
    status, got = await get(
        api, since="2026-03-02", until="2026-03-16", period="week", label="env=prd"
    )
    assert status == 200, got
    assert got["since"].startswith("2026-03-02T00:00:00") and got["period"] == "week"
    total = got["totals"]
    # w1 S, w2 F, w3 F, w4 S, w6 S, a1 S, a2 F, a3 S: 8 counted, 5 successes over 14 days.
    assert (total["deployments"], total["successful"], total["failed"]) == (8, 5, 3)
    assert total["change_failure_rate"] == pytest.approx(3 / 8)
    assert total["deployment_frequency_per_day"] == pytest.approx(5 / 14)
    # lead times 2 h, 1.5 h, 24 h, 1 h, 0.5 h → median 1.5 h
    assert (total["lead_time_median_s"], total["lead_times"]) == (1.5 * H, 5)
    # recoveries 3 h and 6 days → median 3 days + 1.5 h
    assert total["recoveries"] == 2
    assert total["recovery_time_median_s"] == pytest.approx((3 * H + 6 * 24 * H) / 2)

    week1, week2 = got["periods"]
    assert week1["start"].startswith("2026-03-02") and week2["start"].startswith("2026-03-09")
    f1, f2 = week1["figures"], week2["figures"]
    assert (f1["deployments"], f1["successful"], f1["failed"]) == (6, 3, 3)
    assert f1["change_failure_rate"] == 0.5
    assert f1["lead_time_median_s"] == 1.5 * H  # 2 h, 1.5 h, 1 h
    assert (f1["recovery_time_median_s"], f1["recoveries"]) == (3 * H, 1)  # web's, ended Mar 3
    assert (f2["deployments"], f2["successful"], f2["failed"]) == (2, 2, 0)
    assert f2["change_failure_rate"] == 0.0
    assert f2["deployment_frequency_per_day"] == pytest.approx(2 / 7)
    assert f2["lead_time_median_s"] == (24 * H + 0.5 * H) / 2
    assert f2["recovery_time_median_s"] == 6 * 24 * H  # api's, ended Mar 11

    apps = {a["name"]: a["figures"] for a in got["applications"]}
    assert list(apps) == ["api-prd", "web-prd"]  # web-dev is env=dev
    assert apps["web-prd"]["change_failure_rate"] == pytest.approx(2 / 5)
    assert apps["web-prd"]["lead_time_median_s"] == 2 * H  # 2 h, 1.5 h, 24 h
    assert apps["api-prd"]["lead_time_median_s"] == 0.75 * H  # 1 h, 0.5 h
    assert apps["api-prd"]["recovery_time_median_s"] == 6 * 24 * H


async def test_one_application_by_name_per_day_and_commits_without_a_time(api: str) -> None:
    status, got = await get(
        api, since="2026-03-03T00:00:00Z", until="2026-03-05T00:00:00Z", application="web-prd"
    )
    assert status == 200, got
    assert got["application_id"] == "web" and len(got["periods"]) == 2
    mar3, mar4 = (p["figures"] for p in got["periods"])
    assert (mar3["deployments"], mar3["failed"], mar3["recovery_time_median_s"]) == (3, 2, 3 * H)
    assert mar3["deployment_frequency_per_day"] == 1.0
    assert mar4["deployments"] == 0 and mar4["change_failure_rate"] is None  # w5 was cancelled

    # web-dev: two successes, neither with a commit time the log can vouch for.
    status, got = await get(api, since="2026-03-01", until="2026-03-08", label="env=dev")
    assert status == 200, got
    assert got["totals"]["successful"] == 2
    assert (got["totals"]["lead_times"], got["totals"]["lead_time_median_s"]) == (0, None)


async def test_bad_parameters_are_refused_naming_the_field(api: str) -> None:
    for params, field in (
        ({"since": "last tuesday"}, "since"),
        ({"until": "2026-03-10T00:00:00"}, "until"),  # no zone
        ({"period": "month"}, "period"),
        ({"since": "2026-03-10", "until": "2026-03-01"}, "since"),
        ({"since": "2000-01-01", "until": "2026-01-01"}, "since"),  # too many days
        ({"label": "env"}, "label"),
    ):
        status, got = await get(api, **params)
        assert status == 400, (params, got)
        assert got["error"]["field"] == field, (params, got)


async def test_a_replay_rebuilds_the_same_figures(api: str, projector_store: EventStore) -> None:
    params = {"since": "2026-03-02", "until": "2026-03-16", "period": "day"}
    before = await get(api, **params)
    result = await replay(projector_store, InsightsProjection())
    assert result.events > len(HISTORY)  # and the API key served_api made
    assert await get(api, **params) == before


async def test_slipway_insights_prints_the_table_and_the_json(api: str) -> None:
    done = await slipway(
        "insights",
        "--since",
        "2026-03-02",
        "--until",
        "2026-03-16",
        "--period",
        "week",
        "--label",
        "env=prd",
        api_url=api,
    )
    assert done.code == 0, done.err
    total = next(line for line in done.out.splitlines() if line.startswith("total"))
    # deployments, ok, failed, per day, lead time, failure rate, recovery
    assert total.split() == ["total", "8", "5", "3", "0.36", "1h", "30m", "38%", "3d", "1h"]
    assert "web-prd" in done.out and "web-dev" not in done.out
    done = await slipway(
        "insights",
        "--app",
        "api-prd",
        "--since",
        "2026-03-02",
        "--until",
        "2026-03-16",
        "--json",
        api_url=api,
    )
    assert done.code == 0, done.err
    assert '"application_id": "api"' in done.out and len(done.out.splitlines()) > 20
