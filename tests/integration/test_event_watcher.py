"""The event watcher against real git repositories, PostgreSQL and a local GitHub-shaped API.

Each test registers events on the log, hands them to the watcher as the
`gitwatcher-events` consumer would (one transaction each), and reads the
remote repository and the log afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.gitwatcher.configs import read_app_watchers, read_pipe_watchers
from services.gitwatcher.eventwatcher import EventRepository, EventWatcher
from services.gitwatcher.metrics import Metrics
from services.gitwatcher.pullrequests import PullRequests
from shared.apikeys import create_api_key
from shared.errors import Unavailable
from shared.eventlog import EventStore
from shared.events.catalog import EventRegistered
from shared.events.streams import event_key_stream
from shared.git import GitCache
from shared.gitevents import list_events, register_event
from slipway_cli import main
from tests.support.api import served_api
from tests.support.git_helpers import WorkRepo, app_config, git
from tests.support.gitwatcher import register, registration, seed_layout

WATCHER = """\
  eventWatcher:
    - matcher:
        name: image-update
        labels: {{app: {service}, env: dev}}
      handler:
        type: GIT_UPDATE
        config:
          {config}
          replacements:
            - file: deployment.yaml
              yamlField: $.spec.template.spec.containers[0].image
"""

PIPE_WATCHER = """\
apiVersion: pipecd.dev/v1beta1
kind: EventWatcher
spec:
  events:
    - name: helm-version
      labels: {chart: web}
      replacements:
        - file: shared/versions.txt
          regex: "web-chart: (v[0-9.]+)"
"""

TEMPLATE = "Bump {{ .EventName }} to {{ .Value }}"


def _layout(**configs: str) -> dict[str, str]:
    files = seed_layout()
    for service in ("account", "auth", "billing"):
        config = configs.get(service, "commitMessage: ''")
        files[f"{service}/dev/.pipe.yaml"] = app_config(
            f"{service}-dev", "dev", WATCHER.format(service=service, config=config)
        )
        files[f"{service}/dev/deployment.yaml"] = (
            files[f"{service}/dev/deployment.yaml"].replace(
                "image: ",
                "image: ",  # keep the seed's layout as it is
            )
            + "# written by the event watcher\n"
        )
    files[".pipe/event-watcher.yaml"] = PIPE_WATCHER
    files["shared/versions.txt"] = "# chart versions\nweb-chart: v0.1.0\ndb-chart: v0.1.0\n"
    return files


class Remote:
    """A bare repository the watcher pushes to, and a clone for a person's competing pushes."""

    def __init__(self, path: Path, files: dict[str, str]) -> None:
        self.person = WorkRepo(path / "work")
        self.person.commit(files, "initial layout")
        self.bare = path / "remote.git"
        git(path, "clone", "--quiet", "--bare", str(self.person.path), str(self.bare))
        git(self.person.path, "remote", "add", "origin", str(self.bare))
        self.url = self.bare.resolve().as_uri()

    def git(self, *args: str) -> str:
        return git(self.bare, *args)

    def head(self) -> str:
        return self.git("rev-parse", "main")

    def show(self, path: str, rev: str = "main") -> str:
        return self.git("show", f"{rev}:{path}")

    def push_change(self, files: dict[str, str], message: str) -> str:
        """A person's commit on the remote's current head, pushed."""
        git(self.person.path, "fetch", "--quiet", "origin")
        git(self.person.path, "reset", "--quiet", "--hard", "origin/main")
        commit = self.person.commit(files, message)
        git(self.person.path, "push", "--quiet", "origin", "HEAD:main")
        return commit


@pytest.fixture
async def work(tmp_path: Path, store: EventStore, projector_store: EventStore) -> Remote:
    remote = Remote(tmp_path / "config", _layout())
    await register(
        store, projector_store, *(registration(s) for s in ("account", "auth", "billing"))
    )
    return remote


def _watcher(
    store: EventStore, work: Remote, cache: Path, **kw: Any
) -> tuple[EventWatcher, EventRepository]:
    repository = EventRepository(
        repository_id="config",
        git=GitCache(cache, timeout_s=10, fetch_timeout_s=10).repository(work.url),
        branch="main",
        pull_requests=kw.pop("pull_requests", None),
    )
    watcher = EventWatcher(
        store=store,
        repositories=[repository],
        read_app_watchers=read_app_watchers,
        read_pipe_watchers=read_pipe_watchers,
        **kw,
    )
    return watcher, repository


async def _register(store: EventStore, name: str, data: str, **labels: str) -> str:
    return await register_event(store, name=name, data=data, labels=labels, registrar="ci")


async def _deliver(watcher: EventWatcher, store: EventStore, event_id: str) -> None:
    """Hand one registration to the watcher as the consumer does: in one transaction."""
    recorded = next(
        r
        for r in await store.read_all(limit=100_000)
        if isinstance(r.event, EventRegistered) and r.event.event_id == event_id
    )
    async with store.pool.acquire() as conn, conn.transaction():
        await watcher.handle(recorded, conn)


async def _outcomes(store: EventStore, event_id: str) -> list[Any]:
    events = {e.event_id: e for e in await list_events(store)}
    return list(events[event_id].handled)


async def test_register_then_write_back_keeps_the_file_and_records_the_commit(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    before = work.show("account/dev/deployment.yaml")
    watcher, _ = _watcher(store, work, tmp_path / "cache")
    event_id = await _register(
        store, "image-update", "ghcr.io/example/account:v1.2.3", app="account", env="dev"
    )
    await _deliver(watcher, store, event_id)

    after = work.show("account/dev/deployment.yaml")
    assert after == before.replace("account:v1", "account:v1.2.3")
    assert "# written by the event watcher" in after
    head = work.head()
    message = work.git("log", "-1", "--format=%B", "main")
    assert message.splitlines()[0] == (
        'Replace values with "ghcr.io/example/account:v1.2.3" set by Event "image-update"'
    )
    assert f"Slipway-Event-Id: {event_id}" in message
    assert work.git("log", "-1", "--format=%an <%ae>", "main") == (
        "Slipway Event Watcher <eventwatcher@slipway.invalid>"
    )
    assert work.git("diff", "--name-only", "main~1", "main") == "account/dev/deployment.yaml"
    [outcome] = await _outcomes(store, event_id)
    assert (outcome.status, outcome.commit_hash, outcome.branch) == ("SUCCESS", head, "main")
    assert outcome.files == ("account/dev/deployment.yaml",)
    assert outcome.watchers == ("app:account-dev",)

    # Delivered again (a redelivery the inbox missed): nothing more is written or recorded.
    await _deliver(watcher, store, event_id)
    assert work.head() == head
    assert len(await _outcomes(store, event_id)) == 1


async def test_pipe_event_watcher_regex_and_unmatched_labels(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    watcher, _ = _watcher(store, work, tmp_path / "cache")
    chart = await _register(store, "helm-version", "v0.2.0", chart="web")
    await _deliver(watcher, store, chart)
    assert (
        work.show("shared/versions.txt") == "# chart versions\nweb-chart: v0.2.0\ndb-chart: v0.1.0"
    )
    # PipeCD's matching: the same name with other labels is another event.
    head = work.head()
    other = await _register(store, "image-update", "x:v9", app="account")
    await _deliver(watcher, store, other)
    assert work.head() == head
    [outcome] = await _outcomes(store, other)
    assert outcome.status == "NOT_WATCHED"


async def test_an_older_event_never_overwrites_a_newer_one(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    watcher, _ = _watcher(store, work, tmp_path / "cache")
    older = await _register(store, "image-update", "reg/account:v2", app="account", env="dev")
    newer = await _register(store, "image-update", "reg/account:v3", app="account", env="dev")
    await _deliver(watcher, store, newer)
    await _deliver(watcher, store, older)  # delivered late (a slow replica, a redelivery)
    assert "image: reg/account:v3" in work.show("account/dev/deployment.yaml")
    [outcome] = await _outcomes(store, older)
    assert outcome.status == "OUTDATED"
    assert newer in outcome.description
    # The same value again changes nothing.
    again = await _register(store, "image-update", "reg/account:v3", app="account", env="dev")
    await _deliver(watcher, store, again)
    assert [o.status for o in await _outcomes(store, again)] == ["NO_CHANGE"]
    # Listed newest first; a limit keeps the newest.
    assert [e.event_id for e in await list_events(store)] == [again, newer, older]
    assert [e.newest for e in await list_events(store)] == [True, False, False]
    assert [e.event_id for e in await list_events(store, limit=1)] == [again]


async def test_a_refused_push_is_rebuilt_on_the_new_head(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    moved: list[str] = []

    async def someone_pushes(_: EventRepository) -> None:
        if not moved:  # once: the remote moves on between our fetch and our push
            moved.append(work.push_change({"README.md": "edited by a person\n"}, "docs"))

    registry = CollectorRegistry()
    watcher, _ = _watcher(
        store, work, tmp_path / "cache", before_push=someone_pushes, metrics=Metrics(registry)
    )
    event_id = await _register(store, "image-update", "reg/auth:v7", app="auth", env="dev")
    await _deliver(watcher, store, event_id)
    labels = {"repository": "config"}
    assert registry.get_sample_value("slipway_gitwatcher_event_push_refusals_total", labels) == 1
    handled = {"repository": "config", "status": "SUCCESS"}
    assert registry.get_sample_value("slipway_gitwatcher_events_handled_total", handled) == 1

    assert work.git("rev-parse", "main~1") == moved[0]
    assert work.show("README.md") == "edited by a person"
    assert "image: reg/auth:v7" in work.show("auth/dev/deployment.yaml")
    [outcome] = await _outcomes(store, event_id)
    assert (outcome.status, outcome.commit_hash) == ("SUCCESS", work.head())


async def test_a_push_refused_every_time_is_retried_later_not_lost(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    async def always_moves(_: EventRepository) -> None:
        work.push_change({"README.md": f"edit {os.urandom(4).hex()}\n"}, "docs")

    watcher, _ = _watcher(
        store, work, tmp_path / "cache", before_push=always_moves, push_attempts=2
    )
    event_id = await _register(store, "image-update", "reg/auth:v8", app="auth", env="dev")
    with pytest.raises(Unavailable, match="refused 2 times"):
        await _deliver(watcher, store, event_id)
    assert await _outcomes(store, event_id) == []
    calm, _ = _watcher(store, work, tmp_path / "cache2")
    await _deliver(calm, store, event_id)  # the redelivery
    assert [o.status for o in await _outcomes(store, event_id)] == ["SUCCESS"]


async def test_many_events_at_once_from_two_replicas_all_land(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    replicas = [_watcher(store, work, tmp_path / f"cache{i}")[0] for i in range(2)]
    ids = [
        await _register(store, "image-update", f"reg/{service}:v{n}", app=service, env="dev")
        for n in (5, 6)
        for service in ("account", "auth", "billing")
    ]
    await asyncio.gather(
        *(_deliver(replicas[i % 2], store, event_id) for i, event_id in enumerate(ids))
    )
    for service in ("account", "auth", "billing"):
        assert f"image: reg/{service}:v6" in work.show(f"{service}/dev/deployment.yaml")
    statuses = [o.status for event_id in ids for o in await _outcomes(store, event_id)]
    assert len(statuses) == len(ids)  # every event has its outcome
    assert statuses.count("SUCCESS") >= 3
    assert set(statuses) <= {"SUCCESS", "OUTDATED"}


async def test_paths_out_of_the_repository_and_symlinks_are_refused(
    store: EventStore, tmp_path: Path, projector_store: EventStore
) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("image: secret:v1\n")
    files = _layout()
    files["account/dev/.pipe.yaml"] = app_config(
        "account-dev",
        "dev",
        WATCHER.format(service="account", config="commitMessage: ''").replace(
            "file: deployment.yaml", "file: ../../../outside.yaml"
        ),
    )
    files["auth/dev/.pipe.yaml"] = files["auth/dev/.pipe.yaml"].replace(
        "file: deployment.yaml", "file: linked.yaml"
    )
    work = Remote(tmp_path / "config", files)
    person = work.person.path
    os.symlink(outside, person / "auth/dev/linked.yaml")
    os.symlink(tmp_path, person / "billing/dev/linkdir")
    git(person, "add", "auth/dev/linked.yaml", "billing/dev/linkdir")
    work.person.commit(  # on the initial layout, with the symlinks staged above
        {
            "billing/dev/.pipe.yaml": files["billing/dev/.pipe.yaml"].replace(
                "file: deployment.yaml", "file: linkdir/outside.yaml"
            )
        },
        "links",
    )
    git(person, "push", "--quiet", "origin", "HEAD:main")
    await register(
        store, projector_store, *(registration(s) for s in ("account", "auth", "billing"))
    )
    watcher, _ = _watcher(store, work, tmp_path / "cache")
    head = work.head()
    for service, problem in (
        ("account", "outside the repository"),
        ("auth", "not a plain file"),
        ("billing", "symlink or absent"),
    ):
        event_id = await _register(store, "image-update", "evil:v2", app=service, env="dev")
        await _deliver(watcher, store, event_id)
        [outcome] = await _outcomes(store, event_id)
        assert outcome.status == "FAILURE"
        assert problem in outcome.description
    assert work.head() == head
    assert outside.read_text() == "image: secret:v1\n"


SLOW_WATCHER = """\
apiVersion: pipecd.dev/v1beta1
kind: EventWatcher
spec:
  events:
    - name: slow-version
      labels: {chart: web}
      replacements:
        - file: shared/versions.txt
          regex: "(a|aa)+$"
"""
"""A repository's pattern that backtracks exponentially on a run of `a`s ending otherwise."""


async def test_a_regex_past_its_time_limit_fails_its_event_and_the_watcher_goes_on(
    store: EventStore, tmp_path: Path, projector_store: EventStore
) -> None:
    files = _layout()
    files[".pipe/slow.yaml"] = SLOW_WATCHER
    # Unbounded, `(a|aa)+$` spends about 5 s of CPU on this line (1.6 times more per `a`).
    files["shared/versions.txt"] += "a" * 33 + "!\n"
    work = Remote(tmp_path / "config", files)
    await register(
        store, projector_store, *(registration(s) for s in ("account", "auth", "billing"))
    )
    watcher, _ = _watcher(store, work, tmp_path / "cache", regex_time_limit_s=0.2)
    head = work.head()
    slow = await _register(store, "slow-version", "v9", chart="web")
    await _deliver(watcher, store, slow)
    [outcome] = await _outcomes(store, slow)
    assert outcome.status == "FAILURE"
    assert outcome.watchers == (".pipe/slow.yaml",)
    for named in (".pipe/slow.yaml", "shared/versions.txt", "'(a|aa)+$'", "after 0.2 s"):
        assert named in outcome.description
    assert work.head() == head
    # The next event is written as usual.
    chart = await _register(store, "helm-version", "v0.2.0", chart="web")
    await _deliver(watcher, store, chart)
    assert [o.status for o in await _outcomes(store, chart)] == ["SUCCESS"]
    assert "web-chart: v0.2.0" in work.show("shared/versions.txt")


class _GitHub:
    """A local server with GitHub's pull-request API shapes, recording what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
        self.pulls: list[dict[str, Any]] = []

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.method, request.path, body, dict(request.headers)))
        if request.headers.get("Authorization") != "Bearer gh-token":
            return web.json_response({"message": "Bad credentials"}, status=401)
        if not {"title", "head", "base"} <= set(body):
            return web.json_response({"message": "Validation Failed"}, status=422)
        if any(p["head"]["ref"] == body["head"] for p in self.pulls):
            return web.json_response({"message": "A pull request already exists"}, status=422)
        number = len(self.pulls) + 1
        pull = {
            "number": number,
            "html_url": f"https://github.example/acme/config/pull/{number}",
            "head": {"ref": body["head"]},
            "base": {"ref": body["base"]},
        }
        self.pulls.append(pull)
        return web.json_response(pull, status=201)

    async def list(self, request: web.Request) -> web.Response:
        _owner, _, branch = request.query.get("head", "").partition(":")
        return web.json_response([p for p in self.pulls if p["head"]["ref"] == branch])


@pytest.fixture
async def github() -> AsyncIterator[tuple[_GitHub, str]]:
    api = _GitHub()
    app = web.Application()
    app.router.add_post("/api/v3/repos/acme/config/pulls", api.create)
    app.router.add_get("/api/v3/repos/acme/config/pulls", api.list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield api, f"http://127.0.0.1:{port}/api/v3"
    await runner.cleanup()


async def test_make_pull_request_pushes_a_branch_and_opens_a_pull_request(
    store: EventStore, tmp_path: Path, projector_store: EventStore, github: tuple[_GitHub, str]
) -> None:
    api, url = github
    work = Remote(
        tmp_path / "config",
        _layout(billing=f"commitMessage: '{TEMPLATE}'\n          makePullRequest: true"),
    )
    await register(store, projector_store, registration("billing"))
    pulls = PullRequests(api_url=url, repository="acme/config", token="gh-token")
    watcher, _ = _watcher(store, work, tmp_path / "cache", pull_requests=pulls)
    head = work.head()
    event_id = await _register(store, "image-update", "reg/billing:v4", app="billing", env="dev")
    await _deliver(watcher, store, event_id)

    assert work.head() == head  # the watched branch is left alone
    [outcome] = await _outcomes(store, event_id)
    assert outcome.status == "SUCCESS"
    assert outcome.branch.startswith("image-update-")
    assert outcome.pull_request_url == "https://github.example/acme/config/pull/1"
    content = work.show("billing/dev/deployment.yaml", outcome.branch)
    assert "image: reg/billing:v4" in content
    assert work.git("rev-parse", outcome.branch) == outcome.commit_hash
    method, path, body, headers = api.requests[0]
    assert (method, path) == ("POST", "/api/v3/repos/acme/config/pulls")
    assert body["head"] == outcome.branch and body["base"] == "main"
    assert body["title"] == "Bump image-update to reg/billing:v4"
    assert headers["Accept"] == "application/vnd.github+json"

    # A token the API refuses: the branch is pushed all the same, and the outcome says so.
    refused = PullRequests(api_url=url, repository="acme/config", token="stale")
    other, _ = _watcher(store, work, tmp_path / "cache2", pull_requests=refused)
    event_id = await _register(store, "image-update", "reg/billing:v5", app="billing", env="dev")
    await _deliver(other, store, event_id)
    [outcome] = await _outcomes(store, event_id)
    assert outcome.status == "SUCCESS" and outcome.pull_request_url == ""
    assert "pull request was refused" in outcome.description
    assert "image: reg/billing:v5" in work.show("billing/dev/deployment.yaml", outcome.branch)


async def test_a_crash_between_push_and_record_records_the_pushed_commit(
    store: EventStore, work: Remote, tmp_path: Path
) -> None:
    watcher, _ = _watcher(store, work, tmp_path / "cache")
    event_id = await _register(store, "image-update", "reg/account:v9", app="account", env="dev")
    recorded = next(
        r
        for r in await store.read_stream(
            event_key_stream("image-update", (("app", "account"), ("env", "dev")))
        )
        if isinstance(r.event, EventRegistered) and r.event.event_id == event_id
    )
    conn: asyncpg.Connection
    async with store.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await watcher.handle(recorded, conn)
        await transaction.rollback()  # the process died before its transaction committed
    pushed = work.head()
    assert await _outcomes(store, event_id) == []
    await _deliver(watcher, store, event_id)
    assert work.head() == pushed  # no second commit
    [outcome] = await _outcomes(store, event_id)
    assert (outcome.status, outcome.commit_hash) == ("SUCCESS", pushed)
    assert json.dumps(outcome.description)


async def test_cli_registers_over_the_api_and_lists_the_commit(
    store: EventStore, api_pool: asyncpg.Pool, work: Remote, tmp_path: Path, capsys: Any
) -> None:
    writer = await create_api_key(store, "read-write", "ci")
    reader = await create_api_key(store, "read-only", "viewer")
    watcher, _ = _watcher(store, work, tmp_path / "cache")
    async with served_api(store, api_pool) as url:
        register_args = ["event", "register", "--api-url", url, "--name", "image-update"]
        args = [*register_args, "--data", "reg/account:v11", "--labels", "env=dev,app=account"]
        assert await asyncio.to_thread(main, [*args, "--api-key", writer]) == 0
        event_id = capsys.readouterr().out.strip().splitlines()[-1]
        # A read-only key may not register; bad data is refused naming the field.
        assert await asyncio.to_thread(main, [*args, "--api-key", reader]) != 0
        assert "forbidden" in capsys.readouterr().err
        bad = [*register_args, "--data", "v1\nkind: Secret", "--api-key", writer]
        assert await asyncio.to_thread(main, bad) != 0
        assert "[data]" in capsys.readouterr().err

        await _deliver(watcher, store, event_id)
        listing = ["event", "list", "--api-url", url, "--api-key", reader]
        assert await asyncio.to_thread(main, listing) == 0
        out = capsys.readouterr().out.strip().splitlines()
        row = next(line for line in out if "reg/account:v11" in line)
        assert "app=account,env=dev" in row
        assert "SUCCESS" in row and work.head()[:12] in row
        assert await asyncio.to_thread(main, [*listing, "--json"]) == 0
        out = capsys.readouterr().out  # the in-process API's log lines come first
        [event] = json.loads(out[out.index("\n[") :])
        assert event["event_id"] == event_id
        assert event["handled"][0]["commit_hash"] == work.head()
