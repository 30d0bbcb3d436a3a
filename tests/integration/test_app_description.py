"""An application's `spec.description`, from its config file in git to where people look.

The gitwatcher records it with the config's labels (`ApplicationConfigObserved`), once per
change, printable (a NUL or an escape code from the repository does not reach a terminal
or the log) and clipped; the applications read model keeps it; the API answers it,
`slipway app get` prints it (every line), and the console's application page shows it,
escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from shared.events.catalog import ApplicationConfigObserved, ApplicationRegistered
from shared.redaction import DESCRIPTION_CHARS
from shared.testing import wait_until
from tests.support.api import running_projection, served_api
from tests.support.cli import slipway
from tests.support.console import ConsoleClient
from tests.support.git_helpers import WorkRepo
from tests.support.gitwatcher import events_of, make_gitwatcher, register, watched

CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: web
  labels:
    env: prd
  description: {description}
"""
# Two lines, markup, an escape code that would recolour a terminal, and a NUL.
DESCRIPTION = '"The shop\'s <b>web</b> front end.\\nOwned by \\e[31mteam-web\\0."'
SHOWN = "The shop's <b>web</b> front end.\nOwned by \ufffd[31mteam-web\ufffd."


@pytest.fixture
async def api(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    await register(
        store,
        projector_store,
        ApplicationRegistered(
            application_id="web-prd",
            name="web",
            repository_id="config",
            path="web/prd",
            config_filename=".pipe.yaml",
        ),
    )
    async with running_projection(projector_store), served_api(store, api_pool) as url:
        yield url


async def _observations(store: EventStore, count: int) -> list[ApplicationConfigObserved]:
    """The config observations once `count` are visible (the log shows a commit once every
    transaction before it has ended: the projection's are running beside)."""

    async def visible() -> list[ApplicationConfigObserved] | None:
        observed = await events_of(store, ApplicationConfigObserved)
        return observed if len(observed) >= count else None

    await wait_until(visible, within_s=10, what=f"{count} config observations")
    # Nothing more comes: each poll above has finished appending.
    observed = await events_of(store, ApplicationConfigObserved)
    assert len(observed) == count, observed
    return observed


async def _observed(api: str) -> dict[str, Any]:
    """`app get web --json` once the read model has the config's observation."""

    async def projected() -> dict[str, Any] | None:
        got = await slipway("app", "get", "web", "--json", api_url=api)
        app = json.loads(got.out) if got.code == 0 else {}
        return app if app.get("config_labels") else None

    return await wait_until(projected, within_s=10, what="the config observed in the read model")


async def test_the_description_reaches_the_api_the_cli_and_the_console(
    api: str, store: EventStore, tmp_path: Path
) -> None:
    work = WorkRepo(tmp_path / "config")
    work.commit({"web/prd/.pipe.yaml": CONFIG.format(description=DESCRIPTION)}, "web")
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    assert [o.description for o in await _observations(store, 1)] == [SHOWN]

    app = await _observed(api)
    assert app["description"] == SHOWN
    shown = await slipway("app", "get", "web", api_url=api)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    at = lines.index("description:       The shop's <b>web</b> front end.")
    assert lines[at + 1] == "                   Owned by \ufffd[31mteam-web\ufffd."
    assert "\x1b" not in shown.out and "\x00" not in shown.out

    key = await create_api_key(store, "read-only", "reader")
    async with ConsoleClient(api) as browser:
        await browser.sign_in(key)
        status, page = await browser.page("/console/applications/web")
    assert status == 200, page
    assert re.findall(r'<p id="app-description" class="description">(.*?)</p>', page, re.S) == [
        "The shop&#39;s &lt;b&gt;web&lt;/b&gt; front end.\nOwned by \ufffd[31mteam-web\ufffd."
    ]

    # Unchanged at the next commit: nothing recorded again. Changed (and too long): clipped.
    work.commit({"web/prd/README.md": "docs\n"}, "docs")
    await gitwatcher.poll_all()
    work.commit({"web/prd/.pipe.yaml": CONFIG.format(description="x" * 5000)}, "long")
    await gitwatcher.poll_all()
    first, last = await _observations(store, 2)
    assert first.description == SHOWN
    assert len(last.description) == DESCRIPTION_CHARS
    assert last.description.endswith("more characters)")


async def test_an_application_without_a_description_shows_a_dash(
    api: str, store: EventStore, tmp_path: Path
) -> None:
    work = WorkRepo(tmp_path / "config")
    work.commit({"web/prd/.pipe.yaml": CONFIG.replace("  description: {description}\n", "")}, "w")
    await make_gitwatcher(store, tmp_path / "cache", watched(work)).poll_all()
    assert [o.description for o in await _observations(store, 1)] == [""]
    assert (await _observed(api))["description"] == ""
    shown = await slipway("app", "get", "web", api_url=api)
    assert "description:       -\n" in shown.out, shown.out
