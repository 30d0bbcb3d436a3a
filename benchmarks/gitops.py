"""The GitOps benchmark: from a push to 1,000 planned deployments, the services as processes.

`python -m benchmarks.gitops --json` starts one nats-server and one durable
PostgreSQL (fsync on), makes 50 config repositories — a bare "remote" and a
working clone to commit from — of 20 applications each in the seed's layout,
registers the 1,000 applications, and runs the relay, projector, gitwatcher
and planner as subprocesses configured only through the environment, as
`slipway up` runs services. Then, once the gitwatcher has recorded every
repository's first head:

1. webhook latency: one image bump at a time, pushed to its remote and
   announced by a signed GitHub push webhook, timed from the POST until its
   `DeploymentTriggered` can be read from the log;
2. the (1) deployments are completed as an executor would (SUCCESS), so the
   planner frees their applications;
3. planning: one commit per repository bumping all 20 images, 50 webhooks at
   once, timed until every one of the 1,000 deployments is `DeploymentPlanned`.

Peak RSS and CPU of each service come from /proc. Progress goes to stderr;
stdout has the report only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter, process_time
from typing import Any, Final

import aiohttp
import asyncpg

from benchmarks._machine import busy_cores_before, machine_busy_seconds
from benchmarks._report import percentile, print_groups, print_report, progress, quiet_logging
from benchmarks._servers import Servers, running_servers
from shared.db import connect, create_pool
from shared.eventlog import ANY, NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Metadata
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
    default_registry,
)
from shared.events.codec import EventRegistry
from slipway_sandbox._process import free_port
from slipway_sandbox.seed_layout import ANALYSIS_TEMPLATE, DEV_CONFIG, MANIFESTS, PRD_CONFIG
from slipway_sandbox.stack import ServiceProcess

REPOSITORIES: Final = 50
SERVICES_PER_REPOSITORY: Final = 10  # each deployed to dev and prd: 20 applications
ENVIRONMENTS: Final = ("dev", "prd")
APPS_PER_REPOSITORY: Final = SERVICES_PER_REPOSITORY * len(ENVIRONMENTS)
APPLICATIONS: Final = REPOSITORIES * APPS_PER_REPOSITORY
WEBHOOK_PUSHES: Final = 50  # one per repository, one application each
WEBHOOK_SECRET: Final = "bench-webhook-secret"  # noqa: S105 - signs loopback test deliveries
# Far longer than a run: every commit the gitwatcher sees, it sees because of a webhook.
POLL_INTERVAL: Final = "1h"
SCHEMA: Final = "slipway"
SERVICES: Final = ("relay", "projector", "gitwatcher", "planner")
_GIT_USERS: Final = ("gitwatcher", "planner")

# The 3 minutes from start to report, less stopping everything afterwards
# (measured up to ~15 s on a loaded machine: duration_s.teardown).
RUN_BUDGET_S: Final = 160.0
SETUP_TIMEOUT_S: Final = 60.0  # servers, repositories, services, first observation
PUSH_TIMEOUT_S: Final = 20.0  # one webhook until its trigger
PLANNED_TIMEOUT_S: Final = 110.0  # at most, for the 1,000 plans (less when the budget is short)
POLL_S: Final = 0.005  # polling the log for one trigger: below the latency's resolution
COUNT_POLL_S: Final = 0.05  # polling the log for counts of many

TARGET_P95_S: Final = 2.0
TARGET_ALL_PLANNED_S: Final = 30.0

TMPFS: Final = "/dev/shm"  # noqa: S108 - only ever a parent for mkdtemp's private directory

GIT_IDENTITY: Final = {
    "GIT_AUTHOR_NAME": "Bench CI",
    "GIT_AUTHOR_EMAIL": "ci@bench.example",
    "GIT_COMMITTER_NAME": "Bench CI",
    "GIT_COMMITTER_EMAIL": "ci@bench.example",
}


# ----------------------------------------------------------------------------- the seed layout


def manifest(service: str, tag: str) -> str:
    """A service's Deployment manifest running image `tag`."""
    return MANIFESTS.format(service=service, tag=tag, replicas=2, registry="ghcr.io/bench")


@dataclass(frozen=True)
class App:
    """One registered application: a service in one environment of one repository."""

    repository_id: str
    service: str
    env: str

    @property
    def application_id(self) -> str:
        """The application's id (also its name): `<repository>-<service>-<env>`."""
        return f"{self.repository_id}-{self.service}-{self.env}"

    @property
    def path(self) -> str:
        """The application's directory in its repository."""
        return f"{self.service}/{self.env}"

    @property
    def manifest_path(self) -> str:
        """The manifest file a commit bumps."""
        return f"{self.path}/deployment.yaml"

    def files(self, tag: str) -> dict[str, str]:
        """The application's config and manifest at image `tag`."""
        config = DEV_CONFIG if self.env == "dev" else PRD_CONFIG
        return {
            f"{self.path}/app.pipecd.yaml": config.format(name=self.application_id),
            self.manifest_path: manifest(self.service, tag),
        }

    def image_bump(self, tag: str) -> dict[str, str]:
        """The change CI's pull request makes: a new image tag, nothing else."""
        return {self.manifest_path: manifest(self.service, tag)}

    def registration(self) -> ApplicationRegistered:
        """The application's registration, as the API records it."""
        return ApplicationRegistered(
            application_id=self.application_id,
            name=self.application_id,
            repository_id=self.repository_id,
            path=self.path,
            labels=(("env", self.env),),
        )


# ----------------------------------------------------------------------------- git


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with no user or system config; its stdout, stripped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env | GIT_IDENTITY, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@dataclass
class Repository:
    """A bare remote (what the services fetch) and a working clone (what CI commits from)."""

    repository_id: str
    work: Path
    remote: Path
    apps: tuple[App, ...]
    head: str = ""
    commits: int = 0

    @property
    def url(self) -> str:
        """The bare remote's `file://` URL."""
        return self.remote.as_uri()

    def create(self) -> None:
        """The initial commit of every application, pushed to a new bare remote."""
        files = {".pipe/analysis-template.yaml": ANALYSIS_TEMPLATE, "README.md": "config\n"}
        for app in self.apps:
            files |= app.files("v1")
        self._write(files)
        self.work.mkdir(parents=True, exist_ok=True)
        # No templates (sample hooks) and packs rather than loose objects in the remote:
        # fewer files to write now and to delete afterwards.
        git(self.work, "init", "--quiet", "--template=", "--initial-branch=main")
        git(self.work, "add", "--all")
        git(self.work, "commit", "--quiet", "-m", "initial layout")
        git(self.work.parent, "clone", "--quiet", "--bare", "--no-local", "--template=",
            str(self.work), str(self.remote))  # fmt: skip
        git(self.remote, "config", "receive.unpackLimit", "1")
        git(self.work, "remote", "add", "origin", str(self.remote))
        self.head = git(self.work, "rev-parse", "HEAD")

    def push(self, files: Mapping[str, str], message: str) -> tuple[str, str]:
        """Commit `files` (already tracked) and push; (previous head, new head)."""
        self._write(files)
        git(self.work, "commit", "--quiet", "--all", "-m", message)
        git(self.work, "push", "--quiet", "origin", "HEAD:main")
        before, self.head = self.head, git(self.work, "rev-parse", "HEAD")
        self.commits += 1
        return before, self.head

    def _write(self, files: Mapping[str, str]) -> None:
        for name, content in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)


def make_repositories(
    root: Path, count: int = REPOSITORIES, services: int = SERVICES_PER_REPOSITORY
) -> list[Repository]:
    """`count` repositories of `services` services, each deployed to every environment."""
    repositories = []
    for r in range(count):
        repository_id = f"repo-{r:02d}"
        apps = tuple(
            App(repository_id, f"svc{s:02d}", env) for s in range(services) for env in ENVIRONMENTS
        )
        repositories.append(
            Repository(
                repository_id,
                work=root / "work" / repository_id,
                remote=root / "remotes" / f"{repository_id}.git",
                apps=apps,
            )
        )
    return repositories


def control_config(repositories: Sequence[Repository]) -> str:
    """slipway.yaml watching every repository, webhook secret set, polling all but off."""
    lines = ["apiVersion: slipway.dev/v1", "kind: Slipway", "spec:", "  project: bench"]
    lines.append("  repositories:")
    for repo in repositories:
        lines += [
            f"    - repoId: {repo.repository_id}",
            f"      remote: {repo.url}",
            "      branch: main",
            f"      pollInterval: {POLL_INTERVAL}",
            f"      webhookSecret: {WEBHOOK_SECRET}",
        ]
    return "\n".join(lines) + "\n"


def push_payload(repo: Repository, before: str, after: str, message: str) -> bytes:
    """A GitHub `push` delivery, trimmed to what a receiver reads (and a little more)."""
    payload = {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {
            "name": repo.repository_id,
            "full_name": f"bench/{repo.repository_id}",
            "clone_url": repo.url,
            "default_branch": "main",
        },
        "pusher": {"name": "bench-ci", "email": GIT_IDENTITY["GIT_AUTHOR_EMAIL"]},
        "head_commit": {"id": after, "message": message},
    }
    return json.dumps(payload).encode()


def github_signature(body: bytes) -> str:
    """`X-Hub-Signature-256` as GitHub computes it."""
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # After the command name (which may hold spaces): state ppid … (proc(5) field 3 on).
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, those of its exited children: git, for two services)."""
    fields, tick = _stat_fields(pid), os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    children = (int(fields[13]) + int(fields[14])) / tick
    return own, children


def memory_of(bench: Bench) -> dict[str, dict[str, float]]:
    """`memory_mb` of every replica of every service in `SERVICES`, by its key."""
    return {key: memory_mb(bench.pid(key)) for name in SERVICES for key in bench.replicas(name)}


def memory_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) and VmRSS (resident now), in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) / 1024  # kB
    return found


# ----------------------------------------------------------------------------- the run


@dataclass
class Bench:
    """Everything one run holds: servers, repositories, service processes, what was measured."""

    servers: Servers
    root: Path
    log_level: str
    repositories: list[Repository] = field(default_factory=list)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    webhook_port: int = field(default_factory=free_port)
    durations: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=perf_counter)
    """When the run began (before the servers started): the budget counts from here."""
    registry: EventRegistry = field(default_factory=default_registry)
    repository_count: int = REPOSITORIES
    services_per_repository: int = SERVICES_PER_REPOSITORY
    budget_s: float = RUN_BUDGET_S
    """From `started` to the report: the planning wait is cut short to keep it."""
    setup_timeout_s: float = SETUP_TIMEOUT_S
    planned_timeout_s: float = PLANNED_TIMEOUT_S
    planner_replicas: int = 1
    """Planner processes (as pods): the NATS pull consumer shares the triggers among them."""

    @property
    def applications(self) -> int:
        """How many applications the run registers in all."""
        return self.repository_count * self.services_per_repository * len(ENVIRONMENTS)

    @property
    def webhook_url(self) -> str:
        """The gitwatcher's GitHub webhook URL."""
        return f"http://127.0.0.1:{self.webhook_port}/webhooks/github"

    def remaining_s(self) -> float:
        """Seconds left of the whole run's budget."""
        return self.budget_s - (perf_counter() - self.started)

    # Services ------------------------------------------------------------------

    def start_service(self, name: str, *, replica: int = 0, **settings: str) -> None:
        """Start `python -m services.<name>`; a `replica` above 0 is another instance of it,
        known to `pid` and the logs as `<name>-<replica>`."""
        key = f"{name}-{replica}" if replica else name
        port = free_port()
        env = os.environ | {
            "SLIPWAY_DATABASE_URL": self.servers.url_of_service(name),
            "SLIPWAY_DATABASE_SCHEMA": SCHEMA,
            "SLIPWAY_NATS_URL": self.servers.nats.url,
            "SLIPWAY_HEALTH_PORT": str(port),
            "SLIPWAY_LOG_FORMAT": "json",
            "SLIPWAY_LOG_LEVEL": self.log_level,
            "SLIPWAY_SERVICE_INSTANCE": f"{name}-{replica}",
        }
        env |= {f"SLIPWAY_{setting.upper()}": value for setting, value in settings.items()}
        service = ServiceProcess(name, env, self.root / "logs" / f"{key}.log", port)
        service.start()
        self.services[key] = service

    def check_alive(self) -> None:
        """Raise, with the tail of its log, if any service process exited."""
        for service in self.services.values():
            if (code := service.exited()) is not None:
                tail = service.log_path.read_text(errors="replace").splitlines()[-30:]
                raise RuntimeError(
                    f"{service.name} exited with code {code}; its log ({service.log_path}):\n"
                    + "\n".join(tail)
                )

    async def wait_ready(self, *names: str) -> None:
        """Wait until every named service's `/readyz` answers 200."""

        async def ready() -> bool:
            states = [await asyncio.to_thread(self.services[n].ready) for n in names]
            return all(states)

        await self.wait_for(ready, what=f"{', '.join(names)} ready", timeout_s=self.setup_timeout_s)

    def replicas(self, name: str) -> list[str]:
        """The keys of service `name`'s running replicas in `services`: `name`, `name-1`, …"""
        return [key for key in self.services if key == name or key.startswith(f"{name}-")]

    def cpu_seconds(self, name: str) -> tuple[float, float]:
        """CPU seconds of all of service `name`'s replicas so far: (their own, their git's)."""
        times = [cpu_seconds(self.pid(key)) for key in self.replicas(name)]
        return sum(t[0] for t in times), sum(t[1] for t in times)

    def pid(self, name: str) -> int:
        """The process id of service `name`."""
        process = self.services[name].process
        assert process is not None
        return process.pid

    def stop_services(self) -> None:
        """SIGTERM to all at once (each drains on its own), then wait for each."""
        for service in reversed(self.services.values()):
            if service.process is not None and service.exited() is None:
                service.process.terminate()
        for service in reversed(self.services.values()):
            stopping = perf_counter()
            service.stop()
            progress(f"  {service.name} stopped after {perf_counter() - stopping:.1f}s more")

    async def wait_for(
        self,
        condition: Callable[[], Awaitable[bool]],
        *,
        what: str,
        timeout_s: float,
        every_s: float = COUNT_POLL_S,
    ) -> None:
        """Poll `condition` until true; fail naming `what` (or a service that died)."""
        deadline = perf_counter() + timeout_s
        while not await condition():
            self.check_alive()
            if perf_counter() > deadline:
                raise RuntimeError(f"{what}: not reached within {timeout_s:g} s")
            await asyncio.sleep(every_s)


@contextlib.contextmanager
def phase(bench: Bench, name: str) -> Iterator[None]:
    """Time a phase of the run into `bench.durations`, saying when it starts."""
    started = perf_counter()
    progress(f"{name}…")
    try:
        yield
    finally:
        bench.durations[name] = round(perf_counter() - started, 2)
        progress(f"  {name} took {bench.durations[name]}s")


async def setup(bench: Bench, conn: asyncpg.Connection, store: EventStore) -> None:
    """Repositories, control config, registrations, services, first observation."""
    with phase(bench, "repositories"):
        bench.repositories = make_repositories(
            bench.root, bench.repository_count, bench.services_per_repository
        )
        # Threads: each creation is a handful of git processes, mostly waiting on the disk.
        await asyncio.gather(*(asyncio.to_thread(r.create) for r in bench.repositories))
        config = bench.root / "slipway.yaml"
        config.write_text(control_config(bench.repositories))

    with phase(bench, "registration"):
        # Appended directly (the API would add an `appname-` reservation each): one
        # transaction per repository, a stream per application.
        async def register(repo: Repository) -> None:
            async with store.pool.acquire() as c, c.transaction():
                for app in repo.apps:
                    await store.append(
                        f"application-{app.application_id}",
                        new_events([app.registration()]),
                        expected_version=NO_STREAM,
                        conn=c,
                    )

        await asyncio.gather(*(register(r) for r in bench.repositories))

    with phase(bench, "services"):
        bench.start_service("relay")
        bench.start_service("projector")
        await bench.wait_ready("relay", "projector")

        async def projected() -> bool:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                count: int = await conn.fetchval("SELECT count(*) FROM applications")
                return count == bench.applications
            return False

        # The gitwatcher announces config files no registered application points
        # at: it starts once the view knows all 1,000, or it would announce them.
        await bench.wait_for(
            projected, what="applications projected", timeout_s=bench.setup_timeout_s
        )
        bench.start_service(
            "gitwatcher",
            control_config=str(config),
            git_cache_dir=str(bench.root / "cache-gitwatcher"),
            gitwatcher_webhook_port=str(bench.webhook_port),
        )
        for replica in range(bench.planner_replicas):
            bench.start_service(
                "planner",
                replica=replica,
                control_config=str(config),
                # A git cache of its own each, as pods have.
                git_cache_dir=str(bench.root / f"cache-planner{f'-{replica}' if replica else ''}"),
            )
        await bench.wait_ready("gitwatcher", *bench.replicas("planner"))

    with phase(bench, "first_observation"):

        async def observed() -> bool:
            count: int = await conn.fetchval(
                "SELECT count(DISTINCT stream_id) FROM events WHERE event_type = 'commit_observed'"
            )
            return count == bench.repository_count

        await bench.wait_for(observed, what="every head observed", timeout_s=bench.setup_timeout_s)

        async def labels_observed() -> bool:
            count: int = await conn.fetchval(
                "SELECT count(DISTINCT stream_id) FROM events "
                "WHERE event_type = 'application_config_observed'"
            )
            return count == bench.applications

        # After a head, the watcher records each application's config labels (once per
        # application at first): the webhooks are timed on a settled watcher, not behind
        # the 10,000 first recordings.
        await bench.wait_for(
            labels_observed,
            what="every application's config labels observed",
            timeout_s=bench.setup_timeout_s,
            every_s=0.5,
        )


async def last_position(conn: asyncpg.Connection) -> int:
    """The log's last global position."""
    position: int = await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
    return position


async def post_push(
    session: aiohttp.ClientSession, bench: Bench, repo: Repository, before: str, after: str
) -> None:
    """POST a GitHub push webhook for `before`..`after`, signed with the bench's secret."""
    body = push_payload(repo, before, after, f"bump images to {after[:7]}")
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"bench-{after[:12]}",
        "X-Hub-Signature-256": github_signature(body),
    }
    async with session.post(bench.webhook_url, data=body, headers=headers) as reply:
        if reply.status != 202:
            raise RuntimeError(
                f"webhook for {repo.repository_id}: {reply.status} {await reply.text()}"
            )


@dataclass(frozen=True)
class Triggered:
    """One application's deployment triggered by a webhook, with its latency."""

    app: App
    commit: str
    deployment_id: str
    latency_s: float


async def trigger_of(
    bench: Bench, conn: asyncpg.Connection, app: App, commit: str, mark: int
) -> str:
    """The deployment id of `app`'s trigger at `commit` if it is in the log after `mark`, or ""."""
    rows = await conn.fetch(
        "SELECT schema_version, payload FROM events "
        "WHERE global_position > $1 AND event_type = 'deployment_triggered'",
        mark,
    )
    for row in rows:
        event = bench.registry.decode("deployment_triggered", row["schema_version"], row["payload"])
        assert isinstance(event, DeploymentTriggered)
        if event.application_id == app.application_id and event.commit_hash == commit:
            return event.deployment_id
    return ""


async def push_and_wait(
    bench: Bench, conn: asyncpg.Connection, session: aiohttp.ClientSession, n: int
) -> Triggered:
    """Push the `n`th image bump, POST its webhook, wait until its trigger can be read."""
    repo = bench.repositories[n % len(bench.repositories)]
    # A different service and environment each time: dev and prd alike.
    app = repo.apps[(n * 7) % len(repo.apps)]
    mark = await last_position(conn)
    before, after = await asyncio.to_thread(
        repo.push, app.image_bump(f"a{n}"), f"bump {app.service} in {app.env}"
    )
    started = perf_counter()
    await post_push(session, bench, repo, before, after)
    deployment_id = ""

    async def triggered() -> bool:
        nonlocal deployment_id
        deployment_id = await trigger_of(bench, conn, app, after, mark)
        return bool(deployment_id)

    what = f"trigger of {app.application_id} at {after[:12]}"
    await bench.wait_for(triggered, what=what, timeout_s=PUSH_TIMEOUT_S, every_s=POLL_S)
    return Triggered(app, after, deployment_id, perf_counter() - started)


async def measure_webhooks(
    bench: Bench, conn: asyncpg.Connection, session: aiohttp.ClientSession
) -> list[Triggered]:
    """One push at a time, each timed from its webhook to its trigger.

    At most one per repository: a second push to an application would be queued behind
    its first deployment, which nothing here completes yet."""
    pushes = min(WEBHOOK_PUSHES, len(bench.repositories))
    return [await push_and_wait(bench, conn, session, n) for n in range(pushes)]


async def complete(
    bench: Bench, conn: asyncpg.Connection, store: EventStore, deployments: Sequence[Triggered]
) -> None:
    """Wait for the (a) plans, then complete them as the executor would, freeing their apps."""
    streams = [f"deployment-{d.deployment_id}" for d in deployments]

    async def planned() -> bool:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = ANY($1::text[]) "
            "AND event_type IN ('deployment_planned', 'deployment_plan_failed')",
            streams,
        )
        return count == len(streams)

    await bench.wait_for(
        planned, what="webhook deployments planned", timeout_s=bench.setup_timeout_s
    )
    metadata = Metadata(actor="bench-executor")
    for d in deployments:
        completed = DeploymentCompleted(
            deployment_id=d.deployment_id,
            application_id=d.app.application_id,
            status=vocabulary.DeploymentStatus("SUCCESS"),
            commit_hash=d.commit,
        )
        await store.append(
            f"deployment-{d.deployment_id}",
            new_events([completed], metadata=metadata),
            expected_version=ANY,
        )

    async def freed() -> bool:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM planner_deployments "
            "WHERE deployment_id = ANY($1::text[]) AND state = 'done'",
            [d.deployment_id for d in deployments],
        )
        return count == len(deployments)

    await bench.wait_for(
        freed, what="webhook deployments completed", timeout_s=bench.setup_timeout_s
    )


# Only what was committed since the last poll, in the log's commit order (as its readers
# go, `shared.eventlog.store`): counting everything after the mark again at each poll
# cost PostgreSQL a growing share of the CPU it is measured on (10,000 plans, 20 polls/s).
_NEW_SINCE = """
SELECT tx_id::text AS tx_id, global_position, event_type FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND global_position > $3
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND event_type = ANY($4::text[])
ORDER BY tx_id, global_position
"""
_KINDS = [
    "deployment_triggered",
    "deployment_planned",
    "deployment_plan_failed",
    "deployment_queued",
]


@dataclass
class _Tally:
    """Counts by kind of the events committed after `mark`, read a poll's news at a time."""

    mark: int
    counts: Counter[str] = field(default_factory=Counter)
    cursor: tuple[str, int] = ("0", 0)

    async def poll(self, conn: asyncpg.Connection) -> dict[str, int]:
        rows = await conn.fetch(_NEW_SINCE, *self.cursor, self.mark, _KINDS)
        self.counts.update(row["event_type"] for row in rows)
        if rows:
            self.cursor = (rows[-1]["tx_id"], rows[-1]["global_position"])
        return dict(self.counts)


@dataclass
class Planning:
    """What the planning run measured; times in seconds from the first webhook."""

    pushes_s: float
    all_triggered_s: float | None = None
    all_planned_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu_ms_per_plan: dict[str, float] = field(default_factory=dict)
    planner_cpu_s: dict[str, float] = field(default_factory=dict)
    """Each planner replica's own CPU seconds in the run: whether they shared the work."""
    seconds: float = 0.0


async def measure_planning(
    bench: Bench, conn: asyncpg.Connection, session: aiohttp.ClientSession
) -> tuple[Planning, int, datetime]:
    """One commit per repository bumping every image, all announced at once, until all planned."""
    mark = await last_position(conn)
    pushing = perf_counter()
    heads = await asyncio.gather(
        *(
            asyncio.to_thread(
                repo.push,
                {k: v for app in repo.apps for k, v in app.image_bump("b1").items()},
                "bump every image to b1",
            )
            for repo in bench.repositories
        )
    )
    result = Planning(pushes_s=perf_counter() - pushing)
    before_cpu = {name: bench.cpu_seconds(name) for name in SERVICES}
    before_planners = {key: cpu_seconds(bench.pid(key))[0] for key in bench.replicas("planner")}
    before_servers = bench.servers.cpu_seconds()
    before_machine, before_bench = machine_busy_seconds(), process_time()
    started, started_wall = perf_counter(), datetime.now(UTC)
    await asyncio.gather(
        *(
            post_push(session, bench, repo, before, after)
            for repo, (before, after) in zip(bench.repositories, heads, strict=True)
        )
    )
    deadline = started + min(bench.planned_timeout_s, bench.remaining_s())
    tally = _Tally(mark)
    while perf_counter() < deadline:
        result.counts = await tally.poll(conn)
        now = perf_counter() - started
        if result.all_triggered_s is None and result.counts.get(_KINDS[0], 0) >= bench.applications:
            result.all_triggered_s = now
        if result.counts.get("deployment_planned", 0) >= bench.applications:
            result.all_planned_s = now
            break
        if sum(result.counts.get(k, 0) for k in _KINDS[1:]) >= bench.applications:
            break  # every trigger answered, some not by a plan: waiting longer changes nothing
        bench.check_alive()
        await asyncio.sleep(COUNT_POLL_S)
    result.seconds = perf_counter() - started
    after_cpu = {name: bench.cpu_seconds(name) for name in SERVICES}
    result.planner_cpu_s = {
        key: cpu_seconds(bench.pid(key))[0] - before for key, before in before_planners.items()
    }
    postgres, nats = (
        after - before
        for after, before in zip(bench.servers.cpu_seconds(), before_servers, strict=True)
    )
    result.cpu = {
        name: {
            "python_cores": (after_cpu[name][0] - before_cpu[name][0]) / result.seconds,
            "git_cores": (after_cpu[name][1] - before_cpu[name][1]) / result.seconds,
        }
        for name in SERVICES
    }
    result.cpu["postgres"] = {"cores": postgres / result.seconds}
    result.cpu["nats"] = {"cores": nats / result.seconds}
    result.cpu["bench"] = {"cores": (process_time() - before_bench) / result.seconds}
    result.cpu["machine"] = {"cores": (machine_busy_seconds() - before_machine) / result.seconds}
    # CPU per plan hardly depends on what else the machine runs; plans per second does.
    if planned := result.counts.get("deployment_planned", 0):
        # Every service's share, not just the planner's: at 10,000 applications the
        # gitwatcher, relay and projector together cost about as much as the planner.
        result.cpu_ms_per_plan = {
            f"{name}_{part}": (after_cpu[name][i] - before_cpu[name][i]) / planned
            for name in SERVICES
            for i, part in enumerate(("python", "git"))
            if part == "python" or name in _GIT_USERS
        } | {"postgres": postgres / planned}
        result.cpu_ms_per_plan = {k: v * 1000 for k, v in result.cpu_ms_per_plan.items()}
    return result, mark, started_wall


_TIMES = """
SELECT stream_id, event_type, schema_version, payload, recorded_at FROM events
WHERE global_position > $1 AND event_type IN ('deployment_triggered', 'deployment_planned')
"""


async def planning_details(
    conn: asyncpg.Connection, bench: Bench, mark: int, t0: datetime
) -> dict[str, Any]:
    """When the triggers and plans of (b) were recorded, per deployment, and what was decided."""
    triggered: dict[str, datetime] = {}
    planned: dict[str, datetime] = {}
    decisions: Counter[str] = Counter()
    for row in await conn.fetch(_TIMES, mark):
        if row["event_type"] == "deployment_triggered":
            triggered[row["stream_id"]] = row["recorded_at"]
            continue
        planned[row["stream_id"]] = row["recorded_at"]
        event = bench.registry.decode("deployment_planned", row["schema_version"], row["payload"])
        assert isinstance(event, DeploymentPlanned)
        # By strategy and whether a running commit was diffed (reasons name each image).
        decisions[
            f"{event.strategy}, {'after' if event.running_commit_hash else 'no'} running"
        ] += 1
    waits = [(planned[s] - triggered[s]).total_seconds() for s in planned if s in triggered]
    details: dict[str, Any] = {"planning_decisions": dict(decisions)}
    if triggered:
        times = sorted(triggered.values())
        details["planning_first_trigger_after_s"] = (times[0] - t0).total_seconds()
        details["planning_last_trigger_after_s"] = (times[-1] - t0).total_seconds()
    if len(planned) > 1:
        times = sorted(planned.values())
        details["planning_first_plan_after_s"] = (times[0] - t0).total_seconds()
        details["planner_plans_per_s"] = (len(times) - 1) / (times[-1] - times[0]).total_seconds()
    if waits:
        details["planning_trigger_to_planned_p50_s"] = percentile(waits, 50)
        details["planning_trigger_to_planned_p95_s"] = percentile(waits, 95)
    return details


async def run(bench: Bench) -> dict[str, Any]:
    """Part 2's run: repositories, services, webhooks, then one commit per repository."""
    await bench.servers.migrated_schema(SCHEMA)
    conn = await connect(bench.servers.admin_url, schema=SCHEMA)
    pool = await create_pool(bench.servers.app_url, schema=SCHEMA, min_size=4, max_size=4)
    store = EventStore(pool, bench.registry)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await setup(bench, conn, store)
            with phase(bench, "webhooks"):
                webhooks = await measure_webhooks(bench, conn, session)
            with phase(bench, "completions"):
                await complete(bench, conn, store, webhooks)
            with phase(bench, "planning"):
                planning, mark, t0 = await measure_planning(bench, conn, session)
            bench.details |= await planning_details(conn, bench, mark, t0)
        memory = memory_of(bench)
        postgres_version = await conn.fetchval("SHOW server_version")
    finally:
        await pool.close()
        await conn.close()
    return report(bench, webhooks, planning, memory, postgres_version)


def report(
    bench: Bench,
    webhooks: Sequence[Triggered],
    planning: Planning,
    memory: Mapping[str, Mapping[str, float]],
    postgres_version: str,
) -> dict[str, Any]:
    """The figures, their targets and the machine, as the JSON report."""
    latencies = [w.latency_s for w in webhooks]
    p95 = percentile(latencies, 95)
    all_planned = planning.all_planned_s
    planned = planning.counts.get("deployment_planned", 0)
    details: dict[str, Any] = {
        "webhook_pushes": len(latencies),
        "webhook_commit_to_triggered_mean_s": statistics.fmean(latencies),
        "planning_pushes_s": planning.pushes_s,
        "commit_to_all_triggered_s": planning.all_triggered_s,
        "planning_counts": planning.counts,
        "planning_measured_s": planning.seconds,
        "rss_now_mb": {name: round(m["VmRSS"], 1) for name, m in memory.items()},
        **{f"planning_cpu_{who}": cores for who, cores in planning.cpu.items()},
        "planning_cpu_ms_per_plan": planning.cpu_ms_per_plan,
        "planning_planner_cpu_s": planning.planner_cpu_s,
        **bench.details,
    }
    return {
        "webhook_commit_to_triggered_p50_s": round(percentile(latencies, 50), 3),
        "webhook_commit_to_triggered_p95_s": round(p95, 3),
        "webhook_commit_to_triggered_max_s": round(max(latencies), 3),
        "commit_to_all_planned_s": None if all_planned is None else round(all_planned, 2),
        "planned": planned,
        "planner_replicas": bench.planner_replicas,
        "peak_rss_mb": {name: round(m["VmHWM"], 1) for name, m in memory.items()},
        "targets": {
            "webhook_commit_to_triggered_p95_s": {
                "goal": f"<= {TARGET_P95_S:g}",
                "value": round(p95, 3),
                "met": p95 <= TARGET_P95_S,
            },
            "commit_to_all_planned_s": {
                "goal": f"<= {TARGET_ALL_PLANNED_S:g} (all {APPLICATIONS})",
                "value": None if all_planned is None else round(all_planned, 2),
                "met": all_planned is not None and all_planned <= TARGET_ALL_PLANNED_S,
            },
        },
        "duration_s": dict(bench.durations),
        "machine": {"postgres": postgres_version},
        "details": _rounded(details),
        "notes": NOTES,
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


NOTES: Final = {
    "layout": f"{REPOSITORIES} repositories x {SERVICES_PER_REPOSITORY} services x "
    f"{ENVIRONMENTS} = {APPLICATIONS} applications; each app folder has app.pipecd.yaml (dev: "
    "no pipeline, so quick sync; prd: canary, analysis, primary, clean) and a Deployment + "
    "Service manifest with an image tag; .pipe/analysis-template.yaml shared; file:// remotes",
    "services": "relay, projector, gitwatcher and planner as `python -m services.<name>` "
    "subprocesses configured through SLIPWAY_* variables (as the sandbox's stack.py "
    "starts them), JSON logs to files; gitwatcher and planner each keep their own git cache; "
    f"pollInterval {POLL_INTERVAL}, so only webhooks wake the gitwatcher",
    "registration": "ApplicationRegistered appended directly (one transaction per "
    "repository), no API; the gitwatcher starts once the projector's applications view "
    "has all of them",
    "webhook": f"{WEBHOOK_PUSHES} pushes in sequence, one per repository, each an image bump "
    "of one application (dev and prd alternate); the clock starts after the push, just before "
    "the signed POST /webhooks/github, and stops when the app's DeploymentTriggered for that "
    f"commit can be read from the events table (polled every {POLL_S * 1000:g} ms)",
    "completions": "the planner keeps one active deployment per application and nothing "
    "executes deployments here, so the webhook deployments are completed (DeploymentCompleted "
    "SUCCESS, as an executor would append) and the planner has marked them done before the "
    "planning run: every one of the 1,000 triggers is then planned, not queued. Those "
    f"{WEBHOOK_PUSHES} apps now have a running commit, so their plans also render the running "
    "commit and diff (prd: pipeline); the other apps' are first deployments (quick sync)",
    "planning": "one commit per repository bumping all 20 images, pushed (planning_pushes_s, "
    "not counted), then 50 signed webhooks at once; commit_to_all_planned_s runs from the "
    "first POST until 1,000 DeploymentPlanned are in the log (counted every "
    f"{COUNT_POLL_S * 1000:g} ms, each count reading only what was committed since the last, "
    "in the log's commit order); commit_to_all_triggered_s likewise for the triggers",
    "details": "planning_cpu_<service>: CPU seconds per second during the planning run; "
    "python_cores = the service's process (1.0 = its event loop's ceiling; the sum over "
    "its replicas for the planner_replicas planners), git_cores = the git commands it ran; "
    "bench = this process (pushes, webhooks, counting); machine = every "
    "process, other tenants of the machine included (cpu_count is the ceiling); "
    "planner_plans_per_s from the first to the last plan's recorded_at; "
    "planning_cpu_ms_per_plan: each service's CPU (<service>_python, and _git for the "
    "gitwatcher and the planner; all replicas together) and PostgreSQL's per plan, "
    "planning_planner_cpu_s each planner replica's own CPU seconds in the run, "
    "the figure least skewed by other tenants",
    "rss": "peak_rss_mb is each service process's VmHWM at the end of the run (its own "
    "process, not the git commands it starts)",
    "storage": "PostgreSQL (fsync on) and NATS on disk; the repositories and the services' "
    "git caches in /dev/shm when it exists (machine.work_dir), as a warm page cache serves "
    "small repositories; the planner's per-plan checkouts go to $TMPDIR as in production",
}


def print_table(report: dict[str, Any]) -> None:
    """The report as aligned text."""
    for key, value in report.items():
        if not isinstance(value, dict):
            print(f"{key:<38} {value}")
    for name, mb in report["peak_rss_mb"].items():
        print(f"peak_rss_mb.{name:<26} {mb}")
    for key, target in report["targets"].items():
        verdict = "met" if target["met"] else "MISSED"
        print(f"target {key:<31} {target['value']!s:>10} {target['goal']:<22} {verdict}")
    print_groups(report)


@contextlib.contextmanager
def work_directory(keep: str | None) -> Iterator[Path]:
    """Repositories, caches and service logs: a temporary directory, or `keep` left behind."""
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=False)
        yield path
        return
    # In memory when the machine has a tmpfs: deleting the ~40,000 small files of the
    # repositories and git caches took this VM's disk ~20 s, a ninth of the budget.
    shm = TMPFS if os.access(TMPFS, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="slipway-bench-gitops-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gitops", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR (new) and keep it: repositories, service logs"
    )
    parser.add_argument(
        "--planner-replicas",
        type=int,
        default=1,
        help="planner processes sharing the triggers (each its own git cache, as pods)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="the services' log level (info, as in production, by default)",
    )
    args = parser.parse_args(argv)
    if args.planner_replicas < 1:
        parser.error("--planner-replicas must be at least 1")
    quiet_logging()
    started = perf_counter()
    busy_before = busy_cores_before()
    starting = perf_counter()
    with running_servers() as servers, work_directory(args.keep) as root:
        bench = Bench(
            servers, root, args.log_level, started=started, planner_replicas=args.planner_replicas
        )
        bench.durations["servers"] = round(perf_counter() - starting, 2)
        try:
            result = asyncio.run(run(bench))
        finally:
            stopping = perf_counter()
            bench.stop_services()
    result["duration_s"]["teardown"] = round(perf_counter() - stopping, 2)
    result["duration_s"]["total"] = round(perf_counter() - started, 2)
    result["machine"] |= {
        "work_dir": str(root.parent),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "git": git(Path.cwd(), "--version").removeprefix("git version "),
        "platform": platform.platform(),
        "busy_cores_before": round(busy_before, 2),
    }
    print_report(result, as_json=args.json, table=print_table)


if __name__ == "__main__":
    main()
