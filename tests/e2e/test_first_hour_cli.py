"""The first hour with the CLI (issue 19, items 7–9): the real `slipway` against a real API.

Deployment, application and analysis events are appended here as the
gitwatcher, planner, executor and analysis service would append them; the
API, its projections, PostgreSQL and NATS are real, and the CLI runs as a
subprocess, so what is asserted is what a user sees and the exit code a
script gets.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from shared.analysis.judges import judge_named
from shared.analysis.record import fold, judge_tick
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisCheck,
    AnalysisMeasured,
    AnalysisStarted,
    AnalysisTickJudged,
    ApplicationDeleted,
    ApplicationRegistered,
    DeploymentQueued,
    DeploymentStarted,
    StageCompleted,
    StageStarted,
)
from shared.events.ids import analysis_id_of
from shared.ids import new_id
from shared.stagelog import Severity, StageLogs
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support.api import api_key_for, running_projection, served_api
from tests.support.cli import REPO, T0, Cli, started
from tests.support.deployment_events import pipeline, planned, triggered, write

# The variables that would let the CLI reach the database: the CLI must not need them.
_DATABASE_ENVS = ("SLIPWAY_DATABASE_URL", "SLIPWAY_READER_DATABASE_URL")


@pytest.fixture
async def cli(
    store: EventStore,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
    nc: NatsClient,
    subjects: Subjects,
) -> AsyncIterator[Cli]:
    async with (
        running_projection(projector_store),
        served_api(store, api_pool, nc=nc, subjects=subjects) as url,
    ):
        runner = Cli(url, api_key_for(url))
        runner.env = {k: v for k, v in runner.env.items() if k not in _DATABASE_ENVS}
        yield runner


async def as_key(cli: Cli, role: str, name: str) -> Cli:
    """The CLI with a new API key of `role` named `name` (its holder's identity)."""
    created = await cli("apikey", "create", "--role", role, "--name", name, "--json")
    assert created.code == 0, created.err
    other = Cli("", "")
    other.env = cli.env | {"SLIPWAY_API_KEY": json.loads(created.out)["secret"]}
    return other


async def register(store: EventStore, application_id: str, name: str) -> None:
    registered = ApplicationRegistered(
        application_id=application_id, name=name, repository_id="config", path=name
    )
    await store.append(
        f"application-{application_id}", new_events([registered]), expected_version=NO_STREAM
    )


async def listed(cli: Cli, *args: str) -> list[dict[str, object]]:
    done = await cli("deployment", "list", "--json", *args)
    assert done.code == 0, done.err
    return list(json.loads(done.out))


# --- 7. approvals ---------------------------------------------------------------------------

APPROVAL_OPTIONS = '{"approvers": ["alice", "bob"], "minApproverNum": 2}'


async def waiting_for_approval(store: EventStore, d: str) -> None:
    """Planned WAIT_APPROVAL (alice or bob, two of them) then a rollout, waiting for approval."""
    await write(
        store,
        d,
        triggered(d),
        planned(d, pipeline("WAIT_APPROVAL", "K8S_PRIMARY_ROLLOUT", options={0: APPROVAL_OPTIONS})),
        DeploymentStarted(deployment_id=d, application_id="app1", started_at=T0),
        StageStarted(deployment_id=d, stage_id="stage-0", started_at=T0),
    )


async def test_a_waiting_approval_shows_who_may_approve_and_how_many_more(
    cli: Cli, store: EventStore, pool: asyncpg.Pool, nc: NatsClient, subjects: Subjects
) -> None:
    """get (text and JSON) names the approvers and the approvals missing; approving (and
    reading logs) by the stage's name works; a finished stage's reason is not repeated."""
    d = new_id()
    await waiting_for_approval(store, d)
    logs = StageLogs(pool, nc, subjects)
    await logs.write(d, "stage-0", Severity.INFO, "waiting for approval")
    await logs.write(d, "stage-1", Severity.INFO, "not this one")
    named = await cli("deployment", "logs", d, "--stage", "WAIT_APPROVAL")
    assert named.code == 0, named.err
    assert [line.split(maxsplit=3)[-1] for line in named.out.splitlines()] == [
        "waiting for approval"
    ]
    got = await cli("deployment", "get", d, "--json")
    assert got.code == 0, got.err
    stage = json.loads(got.out)["stages"][0]
    assert (stage["allowed_approvers"], stage["approvals_needed"]) == (["alice", "bob"], 2)
    text = await cli("deployment", "get", d)
    assert "WAIT_APPROVAL" in text.out
    assert "needs 2 more approvals from alice, bob" in text.out

    alice = await as_key(cli, "read-write", "alice")
    approved = await alice("deployment", "approve", d, "--stage", "WAIT_APPROVAL")
    assert approved.code == 0, approved.err
    assert "stage stage-0 recorded" in approved.out  # the name was resolved to the id
    after = json.loads((await cli("deployment", "get", d, "--json")).out)["stages"][0]
    assert (after["approvers"], after["approvals_needed"]) == (["alice"], 1)
    text = await cli("deployment", "get", d)
    assert "approved by alice; needs 1 more approval from alice, bob" in text.out

    await write(
        store,
        d,
        StageCompleted(
            deployment_id=d,
            stage_id="stage-0",
            status=vocabulary.StageStatus.SUCCESS,
            reason="Approved by alice, bob",
        ),
    )
    done = await cli("deployment", "get", d)
    assert done.code == 0, done.err
    [line] = [line for line in done.out.splitlines() if "stage-0" in line]
    assert line.lower().count("approved by") == 1, line


async def test_a_stage_name_shared_by_two_stages_is_refused_naming_them(
    cli: Cli, store: EventStore
) -> None:
    """`skip --stage WAIT` with two WAIT stages exits 1 and lists their ids; an id still works."""
    d = new_id()
    await write(
        store,
        d,
        triggered(d),
        planned(d, pipeline("WAIT", "WAIT")),
        DeploymentStarted(deployment_id=d, application_id="app1", started_at=T0),
        StageStarted(deployment_id=d, stage_id="stage-0", started_at=T0),
    )
    ambiguous = await cli("deployment", "skip", d, "--stage", "WAIT")
    assert ambiguous.code == 1
    assert "2 WAIT stages (stage-0, stage-1)" in ambiguous.err
    by_id = await cli("deployment", "skip", d, "--stage", "stage-0")
    assert by_id.code == 0, by_id.err


# --- 8. broken pipes ------------------------------------------------------------------------


async def piped_into_head(cli: Cli, workdir: Path, *args: str) -> tuple[str, str, int]:
    """`slipway ARGS | head -1` in bash: head's line, the CLI's stderr and its exit code.

    The command must print far more than a pipe holds (64 KiB), so that it is
    still writing when head has read its line and gone.
    """
    slipway = shlex.join([sys.executable, "-m", "slipway_cli", *args])
    command = f'{slipway} 2>cli.err | head -1; echo "${{PIPESTATUS[0]}}" >cli.code'
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=workdir, env=cli.env | {"PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return out.decode(), (workdir / "cli.err").read_text(), int((workdir / "cli.code").read_text())


async def many_events(store: EventStore, count: int = 1500) -> None:
    """`count` events in the log (about 150 bytes each as `events tail` prints them)."""
    d = new_id()
    await write(
        store,
        d,
        *(triggered(d, commit=f"c{n}") for n in range(count)),
    )


async def test_a_reader_that_closes_early_ends_the_cli_quietly(
    cli: Cli,
    store: EventStore,
    pool: asyncpg.Pool,
    nc: NatsClient,
    subjects: Subjects,
    tmp_path: Path,
) -> None:
    """`deployment logs ID | head -1` and `events tail … | head -1`: one line, no traceback,
    exit 141 (128 + SIGPIPE, as a Unix tool that SIGPIPE ended)."""
    d = new_id()
    await started(store, d)
    logs = StageLogs(pool, nc, subjects)
    # Far more than a pipe holds, so the CLI is still writing when head has gone.
    for n in range(2500):
        await logs.write(d, "stage-0", Severity.INFO, f"line {n:05} " + "x" * 40)
    out, err, code = await piped_into_head(cli, tmp_path, "deployment", "logs", d)
    assert out.rstrip().endswith("line 00000 " + "x" * 40)
    assert (code, err) == (141, "")

    await many_events(store)
    out, err, code = await piped_into_head(cli, tmp_path, "events", "tail", "--from-position", "0")
    assert len(out.splitlines()) == 1
    assert (code, err) == (141, "")


async def test_a_pipe_closed_before_the_first_write_is_no_traceback_either(
    cli: Cli, store: EventStore
) -> None:
    """With the pipe's reader gone before it starts, `events show` exits 141 and prints
    nothing on stderr (every command shares the one handler)."""
    d = new_id()
    await started(store, d)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "slipway_cli", "events", "show", f"deployment-{d}",
            cwd=REPO, env=cli.env, stdout=write_end, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write_end)
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert (process.returncode, err.decode()) == (141, "")


# --- 9. rough edges -------------------------------------------------------------------------


async def test_deployments_show_their_application_by_name_also_once_deleted(
    cli: Cli, store: EventStore
) -> None:
    """get names the application; list names a deleted one and marks it (text and JSON)."""
    live, gone = new_id(), new_id()
    await register(store, live, "web")
    await register(store, gone, "old")
    d_live, d_gone = new_id(), new_id()
    await started(store, d_live, live)
    await started(store, d_gone, gone)
    await store.append(
        f"application-{gone}", new_events([ApplicationDeleted(application_id=gone)]),
        expected_version=0,
    )  # fmt: skip

    got = await cli("deployment", "get", d_live)
    assert got.code == 0, got.err
    assert f"application: web (id {live})" in got.out

    async def both_listed() -> list[dict[str, object]] | None:
        items = await listed(cli)
        names = {
            i["deployment_id"]: (i["application_name"], i["application_deleted"]) for i in items
        }
        return items if names.get(d_gone) == ("old", True) and d_live in names else None

    await wait_until(both_listed, within_s=30, what="both deployments listed, one app deleted")
    table = (await cli("deployment", "list")).out
    [gone_row] = [row for row in table.splitlines() if row.startswith(d_gone)]
    assert "old (deleted)" in gone_row
    [live_row] = [row for row in table.splitlines() if row.startswith(d_live)]
    assert "web" in live_row and live not in live_row
    deleted = await cli("deployment", "get", d_gone)
    assert "application: old (deleted)" in deleted.out


async def test_a_unique_prefix_names_a_deployment_as_in_git(cli: Cli, store: EventStore) -> None:
    """An 8-character prefix works for get, logs and cancel; an ambiguous one exits 1 naming the
    candidates; an unknown one exits 1 as not found."""
    base = new_id()
    first, second = base[:8] + "0" * 18, base[:8] + "1" * 18
    await started(store, first)
    await started(store, second)

    async def in_read_model() -> bool:
        ids = {i["deployment_id"] for i in await listed(cli)}
        return {first, second} <= ids

    await wait_until(in_read_model, within_s=30, what="both deployments listed")
    unique = first[:9]
    got = await cli("deployment", "get", unique)
    assert got.code == 0, got.err
    assert f"deployment:  {first}" in got.out
    assert (await cli("deployment", "logs", unique)).code == 0
    cancelled = await cli("deployment", "cancel", unique)
    assert cancelled.code == 0 and first in cancelled.out, cancelled.err

    ambiguous = await cli("deployment", "get", base[:8])
    assert ambiguous.code == 1
    assert "ambiguous" in ambiguous.err and first in ambiguous.err and second in ambiguous.err
    unknown = await cli("deployment", "get", "zzzzzzzz")
    assert unknown.code == 1 and "no deployment" in unknown.err


async def test_a_pending_deployment_says_what_it_waits_for(cli: Cli, store: EventStore) -> None:
    """A queued deployment: get's text names the one it waits behind; list --json has it."""
    ahead, queued = new_id(), new_id()
    await started(store, ahead)
    await write(
        store,
        queued,
        triggered(queued, commit="c2"),
        DeploymentQueued(deployment_id=queued, application_id="app1", behind_deployment_id=ahead),
    )
    got = await cli("deployment", "get", queued)
    assert got.code == 0, got.err
    assert f"waiting:     its turn, after deployment {ahead}" in got.out

    async def queued_listed() -> bool:
        items = {i["deployment_id"]: i for i in await listed(cli, "--status", "PENDING")}
        return queued in items and items[queued]["queued_behind"] == ahead

    await wait_until(queued_listed, within_s=30, what="queued_behind in the listing")


@pytest.mark.usefixtures("store")
async def test_usage_errors_exit_2_and_unknown_things_exit_1(cli: Cli) -> None:
    """--limit 0 and --status RUNING are usage errors (2); an unknown stream exits 1 saying so;
    apikey list has a header."""
    limit = await cli("deployment", "list", "--limit", "0")
    assert limit.code == 2 and "at least 1" in limit.err
    status = await cli("deployment", "list", "--status", "RUNING")
    assert status.code == 2 and "RUNING" in status.err
    nosuch = await cli("events", "show", "deployment-nosuch")
    assert nosuch.code == 1 and "no stream 'deployment-nosuch'" in nosuch.err
    keys = await cli("apikey", "list")
    assert keys.code == 0, keys.err
    assert keys.out.splitlines()[0].split() == ["ID", "NAME", "ROLE", "STATE"]


def _analysis_events(d: str, stage_id: str, values: list[str]) -> list[Event]:
    """A recorded THRESHOLD analysis of `stage_id`, each value a tick judged as the service does."""
    check = AnalysisCheck(
        key="metrics[0] error-rate", kind=vocabulary.CheckKind.METRICS,
        strategy=vocabulary.CheckStrategy.THRESHOLD, interval_s=3.0,
        provider="prom", query="q", expected_max=0.1,
    )  # fmt: skip
    judge = judge_named("pipecd")
    analysis_id = analysis_id_of(d, stage_id)
    events: list[Event] = [
        AnalysisStarted(
            analysis_id=analysis_id, deployment_id=d, stage_id=stage_id, started_at=T0,
            judge=judge.name, judge_version=judge.version, duration_s=3.0 * len(values),
            checks=(check,),
        )
    ]  # fmt: skip
    for n, value in enumerate(values, start=1):
        events.append(
            AnalysisMeasured(analysis_id=analysis_id, check=check.key, tick=n, values=(value,))
        )
        record = fold(enumerate(events))
        verdict = judge_tick(record, record.checks[check.key], n, judge)
        events.append(
            AnalysisTickJudged(
                analysis_id=analysis_id, check=check.key, tick=n, at_s=3.0 * n,
                strategy=vocabulary.CheckStrategy.THRESHOLD,
                outcome=vocabulary.TickOutcome(verdict.outcome), reason=verdict.reason,
                judge=verdict.judge, judge_version=verdict.judge_version,
                failures=verdict.failures, statistics=verdict.statistics,
            )
        )  # fmt: skip
    return events


async def test_rejudge_goes_through_the_api_with_a_read_only_key(
    cli: Cli, store: EventStore, reader_database_url: str, schema: str
) -> None:
    """`analysis rejudge` needs no database: a read-only key recomputes identical verdicts
    (exit 0); a deployment that does not exist is "not found" (exit 1), not a config error."""
    d = new_id()
    await write(
        store,
        d,
        triggered(d),
        planned(d, pipeline("ANALYSIS")),
    )
    events = _analysis_events(d, "stage-0", ["0.0", "0.05"])
    await store.append(
        f"analysis-{analysis_id_of(d, 'stage-0')}", new_events(events), expected_version=NO_STREAM
    )
    reader = await as_key(cli, "read-only", "auditor")
    text = await reader("analysis", "rejudge", d)
    assert text.code == 0, text.err
    assert "metrics[0] error-rate: 2/2 tick verdict(s) identical" in text.out
    as_json = await reader("analysis", "rejudge", d, "--json")
    report = json.loads(as_json.out)
    assert report["identical"] is True and report["analyses"][0]["stage_id"] == "stage-0"

    missing = await reader("analysis", "rejudge", new_id())
    assert missing.code == 1
    assert "no deployment" in missing.err and "configuration" not in missing.err

    # --direct reads the same report from the database, and says "not found" alike.
    database = ("--database-url", reader_database_url, "--schema", schema)
    direct = await reader("analysis", "rejudge", d, "--json", "--direct", *database)
    assert direct.code == 0, direct.err
    assert json.loads(direct.out) == report
    gone = await reader("analysis", "rejudge", "nosuch", "--direct", *database)
    assert gone.code == 1
    assert "no deployment 'nosuch'" in gone.err and "configuration" not in gone.err


# --- the README's exit codes ----------------------------------------------------------------


def documented_exit_codes() -> dict[int, str]:
    """The README's "Exit codes: 0 …; 1 …; …" paragraph, as code → meaning."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^Exit codes: (.*?)\.\s*Services exit", readme, re.M | re.S)
    assert match, "the README has no 'Exit codes:' paragraph"
    parts = [p.strip() for p in " ".join(match.group(1).split()).split(";")]
    return {int(p.split(" ", 1)[0]): p.split(" ", 1)[1] for p in parts}


async def test_the_exit_codes_the_readme_lists_are_the_ones_commands_return(
    cli: Cli, store: EventStore, tmp_path: Path
) -> None:
    """Each exit code the README documents, produced by a command that should produce it."""
    d = new_id()
    await started(store, d)
    cases = {
        0: ("deployment", "get", d),
        1: ("deployment", "get", "nosuchdeployment"),
        2: ("deployment", "list", "--limit", "0"),
        3: ("deployment", "list", "--api-url", "http://127.0.0.1:9"),
        4: ("deployment", "wait-status", d, "--wait-status", "SUCCESS", "--timeout", "1"),
    }
    documented = documented_exit_codes()
    assert set(documented) == {*cases, 141}, documented
    for code, args in cases.items():
        done = await cli(*args)
        assert done.code == code, (documented[code], args, done.err)
    await many_events(store)
    _, err, piped = await piped_into_head(cli, tmp_path, "events", "tail", "--from-position", "0")
    assert (piped, err) == (141, "")


async def test_a_deployment_is_shown_by_its_whole_id_before_any_read_model_exists(
    store: EventStore, api_pool: asyncpg.Pool, nc: NatsClient, subjects: Subjects
) -> None:
    """Without the projector (no `applications`/`deployments` views yet), `deployment get`
    by the whole id still answers from the stream (the application by id), and an id not
    there yet is not found (exit 1), not unavailable."""
    d = new_id()
    await started(store, d)
    async with served_api(store, api_pool, nc=nc, subjects=subjects) as url:
        cli = Cli(url, api_key_for(url))
        got = await cli("deployment", "get", d)
        assert got.code == 0, got.err
        assert "application: app1" in got.out
        missing = await cli("deployment", "get", new_id())
        assert missing.code == 1 and "HTTP 404" in missing.err, missing.err
