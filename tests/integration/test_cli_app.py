"""`slipway app …` as a user runs it: a subprocess against a served API; output and exit codes."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.eventlog import EventStore
from shared.events.catalog import SyncRequested
from shared.events.ids import on_command_deployment_id
from tests.support.api import running_projection, served_api
from tests.support.cli import slipway, wait_projected


@pytest.fixture
async def api_url(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    async with running_projection(projector_store), served_api(store, api_pool) as url:
        yield url


async def test_add_list_get_round_trip_with_readable_and_json_output(api_url: str) -> None:
    """`app add` registers, `app list` shows a table (or JSON), `app get` shows one app."""
    first = await slipway(
        "app", "add", "--name", "account-prd", "--repo", "config", "--path", "account/prd",
        "--config-filename", ".pipe.yaml", api_url=api_url,
    )  # fmt: skip
    assert first.code == 0, first.err
    assert first.out.startswith("registered account-prd (id ")

    added = await slipway(
        "app", "add", "--name", "account-dev", "--repo", "config", "--path", "account/dev",
        "--label", "env=dev", "--label", "team=flags", "--json", api_url=api_url,
    )  # fmt: skip
    assert added.code == 0, added.err
    app = json.loads(added.out)
    assert (app["name"], app["labels"]) == ("account-dev", {"env": "dev", "team": "flags"})
    # Reads come from the projection: let it catch up, so the CLI's reads see both.
    await wait_projected(api_url, app["position"])

    got = await slipway("app", "get", "account-prd", "--json", api_url=api_url)
    assert got.code == 0, got.err
    assert json.loads(got.out)["config_filename"] == ".pipe.yaml"

    listed = await slipway("app", "list", api_url=api_url)
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split() == ["NAME", "ID", "REPOSITORY", "PATH", "STATUS", "SYNC", "LABELS"]
    assert [row.split()[0] for row in rows] == ["account-dev", "account-prd"]
    assert rows[0].split()[2:] == [
        "config",
        "account/dev",
        "enabled",
        "UNKNOWN",
        "env=dev,team=flags",
    ]

    only_dev = await slipway("app", "list", "--label", "env=dev", "--json", api_url=api_url)
    assert [a["name"] for a in json.loads(only_dev.out)] == ["account-dev"]

    shown = await slipway("app", "get", app["application_id"], api_url=api_url)
    assert shown.code == 0, shown.err
    assert "name:              account-dev" in shown.out
    assert "labels:            env=dev,team=flags" in shown.out
    assert "sync:              UNKNOWN\n" in shown.out
    assert "last deployment:   -\n" in shown.out


async def test_sync_maps_quick_to_quick_sync_and_records_the_request(
    api_url: str, store: EventStore
) -> None:
    """`app sync NAME --strategy quick` appends SyncRequested(strategy=quick_sync) and says so."""
    added = await slipway(
        "app", "add", "--name", "web", "--repo", "config", "--path", "web", "--json",
        api_url=api_url,
    )  # fmt: skip
    app_id = json.loads(added.out)["application_id"]

    synced = await slipway(
        "app", "sync", "web", "--strategy", "quick", "--no-confirm", api_url=api_url
    )  # fmt: skip
    assert synced.code == 0, synced.err
    assert synced.out.startswith("sync requested for web: request ")
    assert ", strategy quick_sync, deployment " in synced.out

    recorded = (await store.read_stream(f"application-{app_id}"))[-1].event
    assert isinstance(recorded, SyncRequested)
    assert recorded.strategy == "quick_sync"
    assert recorded.request_id in synced.out
    assert on_command_deployment_id(app_id, recorded.request_id) in synced.out


async def test_refusals_exit_1_with_the_apis_message(api_url: str) -> None:
    """A taken name, a malformed field and an unknown app each exit 1 printing why."""
    args = ("app", "add", "--name", "web", "--repo", "config", "--path", "web")
    assert (await slipway(*args, api_url=api_url)).code == 0
    taken = await slipway(*args, api_url=api_url)
    assert taken.code == 1
    assert "already exists" in taken.err and "409 name_taken" in taken.err

    bad = await slipway(
        "app", "add", "--name", "web2", "--repo", "config", "--path", "../up", api_url=api_url
    )
    assert bad.code == 1
    assert "[path]" in bad.err

    unknown = await slipway("app", "sync", "nope", api_url=api_url)
    assert (unknown.code, "404 not_found" in unknown.err) == (1, True)


async def test_usage_errors_exit_2() -> None:
    """Missing options, a malformed --label or a bad --api-url exit 2 before any request."""
    unused = "http://127.0.0.1:9"
    missing = await slipway("app", "add", "--name", "web", api_url=unused)
    assert missing.code == 2
    label = await slipway(
        "app", "add", "--name", "w", "--repo", "r", "--path", "p", "--label", "novalue",
        api_url=unused,
    )  # fmt: skip
    assert (label.code, "key=value" in label.err) == (2, True)
    strategy = await slipway("app", "sync", "web", "--strategy", "fast", api_url=unused)
    assert strategy.code == 2
    url = await slipway("app", "list", "--api-url", "ftp://example", api_url=unused)
    assert (url.code, "ftp://example" in url.err) == (2, True)


async def test_an_unreachable_api_exits_3_naming_the_url() -> None:
    """With nothing listening at the API URL, commands exit 3 and print that URL."""
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    done = await slipway("app", "list", api_url=url)
    assert done.code == 3
    assert f"cannot reach the Slipway API at {url}" in done.err
