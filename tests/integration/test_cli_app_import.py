"""`slipway app import --from-file`: register, take over PipeCD's objects, record the adoption."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from kubesim import KubeSim
from kubesim.testing import Kubectl, find_kubectl
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from shared.events.catalog import ApplicationAdopted
from shared.platform import KubernetesPlatform
from shared.testing import wait_until
from tests.support.api import running_projection, served_api
from tests.support.cli import slipway
from tests.support.console import ConsoleClient

COMMIT = "4f2c1e9a7b3d5f6e8a0b1c2d3e4f5a6b7c8d9e0f"
PIPECD_OBJECTS = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
  annotations:
    pipecd.dev/managed-by: piped
    pipecd.dev/application: pipecd-web
    pipecd.dev/commit-hash: {COMMIT}
data: {{LEVEL: info}}
"""


@pytest.fixture
async def api_url(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    async with running_projection(projector_store), served_api(store, api_pool) as url:
        yield url


@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[Path]:
    async with KubeSim() as sim:
        yield sim.write_kubeconfig(tmp_path / "kubeconfig")


async def test_bulk_import_registers_takes_over_and_names_what_it_could_not(
    api_url: str, store: EventStore, kubeconfig: Path, tmp_path: Path
) -> None:
    """Two applications in the file: `web`, registered by the import, has its ConfigMap
    labelled and its adoption recorded with PipeCD's commit; `ghost` has no objects in the
    cluster: named with the reason, exit 1."""
    binary = find_kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed")
    kubectl = Kubectl(binary, kubeconfig, tmp_path / "cache")
    await kubectl("apply", "-f", "-", stdin=PIPECD_OBJECTS)
    apps = tmp_path / "apps.yaml"
    apps.write_text(
        "applications:\n"
        "  - {name: web, repo: config, path: web/prd, configFilename: .pipe.yaml,"
        " pipecdAppId: pipecd-web}\n"
        "  - {name: ghost, repo: config, path: ghost/prd, pipecdAppId: pipecd-ghost}\n"
    )
    done = await slipway(
        "app", "import", "--from-file", str(apps), "--kubeconfig", str(kubeconfig),
        api_url=api_url,
    )  # fmt: skip
    assert done.code == 1, done.err
    assert f"imported web: 1 objects, running commit {COMMIT[:12]}" in done.out
    assert "ghost: not imported: no object in the cluster is annotated" in done.err

    async with KubernetesPlatform(kubeconfig) as cluster:
        live: Any = await cluster.get("/ConfigMap/shop/web-config")
    application_id = live["metadata"]["labels"]["slipway.dev/application"]
    recorded = [e.event for e in await store.read_stream(f"application-{application_id}")]
    assert recorded[-1] == ApplicationAdopted(
        application_id=application_id,
        running_commit_hash=COMMIT,
        resources=("/ConfigMap/shop/web-config",),
        pipecd_application_id="pipecd-web",
        commander="test-admin",
    )

    # Where people look: the adopted commit is the running one, and says where it came from.
    async def adopted() -> str | None:
        shown = await slipway("app", "get", "web", api_url=api_url)
        return shown.out if "(adopted from PipeCD" in shown.out else None

    shown = await wait_until(adopted, within_s=10, what="the adoption in the read model")
    assert f"running commit:    {COMMIT} (adopted from PipeCD by `slipway app import`)\n" in shown
    got = json.loads((await slipway("app", "get", "web", "--json", api_url=api_url)).out)
    assert (got["sync"]["running_commit"], got["sync"]["adopted_commit"]) == (COMMIT, COMMIT)
    key = await create_api_key(store, "read-only", "reader")
    async with ConsoleClient(api_url) as browser:
        await browser.sign_in(key)
        status, page = await browser.page("/console/applications/web")
    assert status == 200, page
    assert f'id="app-running-commit">{COMMIT[:12]} (adopted from PipeCD)</dd>' in page


async def test_a_bad_file_is_a_usage_error_naming_the_entry_and_field(
    api_url: str, tmp_path: Path
) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text("applications:\n  - {name: web, pipecdAppID: x}\n")
    done = await slipway("app", "import", "--from-file", str(apps), api_url=api_url)
    assert done.code == 2
    assert "applications[0]: unknown field 'pipecdAppID'" in done.err
