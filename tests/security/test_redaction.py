"""The log holds no secrets (issue 10, item 4): what is secret is masked before it is logged
or recorded — in the events table, the stage logs and the services' own log lines.

The end-to-end test pushes each kind of secret through the paths that could carry it
(a script echoing its `secretEnv` and the control config's credentials, a Secret's data
printed from the checkout, an HTTP check whose URL carries a token and whose endpoint
echoes it, a failure reason quoting all that, a log line quoting a configured password),
then searches the whole events table, every stage log line and the captured structlog
output of the in-process services for every secret value.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from kubesim import KubeSim
from services.notifier.notify.retry import RetryPolicy
from shared.config.secrets import control_secrets, kubeconfig_secrets
from shared.deploysource import load_deploy_source
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import AnalysisMeasured, DeploymentPlanned, StageCompleted
from shared.events.ids import analysis_id_of
from shared.git import GitCache
from shared.logs import configure_logging, get_logger, reset_logging
from shared.planning import Strategy, TriggerInfo, diff_manifests, make_plan
from shared.planning.stages import recorded_options
from shared.platform.apiserver import api_error
from shared.redaction import MASK, REDACTOR, Redactor, excerpt
from shared.testing import wait_until
from shared.wiring import control_config
from slipway_sandbox._process import free_port
from tests.support import Backends, running, write_control_yaml
from tests.support.analysis import analysis_replica
from tests.support.executor import APP_PATH, CONFIG, DEPLOYMENT, Harness, write_control_config
from tests.support.git_helpers import WorkRepo
from tests.support.notifier import (
    failing_deployment,
    notification_events,
    notifier_running,
    recorded,
    register,
)

# Every value below must never be found in the log, the stage logs or the service logs.
PROM_PASSWORD = "prom-password-4711"
SLACK_HOOK = "https://hooks.slack.example/services/T0/B0/slack-hook-secret-99"
SIGNING_SECRET = "webhook-signing-secret-77"
WEBHOOK_TOKEN = "audit-token-321"
SECRET_DATA = "secret-data-value-1"  # a Secret's `data` (base64 in the manifest)
SECRET_STRING = "secret-string-value-2"  # a Secret's `stringData`
SECRET_ENV = "secret-env-value-3"  # a SCRIPT_RUN's `secretEnv`
URL_TOKEN = "url-token-555"  # in an HTTP check's URL, echoed by the endpoint
ALL_SECRETS = (
    PROM_PASSWORD,
    SLACK_HOOK,
    SIGNING_SECRET,
    WEBHOOK_TOKEN,
    SECRET_DATA,
    base64.b64encode(SECRET_DATA.encode()).decode(),
    SECRET_STRING,
    SECRET_ENV,
    URL_TOKEN,
)

SECRET_MANIFEST = f"""\
---
apiVersion: v1
kind: Secret
metadata:
  name: db-creds
data:
  password: {base64.b64encode(SECRET_DATA.encode()).decode()}
stringData:
  apikey: {SECRET_STRING}
"""

SCRIPT = f"""\
echo "token=$API_TOKEN and plain $PLAIN"
echo "as is: $API_TOKEN"
cat manifests.yaml
echo "configured: {PROM_PASSWORD} {SLACK_HOOK} {SIGNING_SECRET}"
echo "last words $API_TOKEN {PROM_PASSWORD}"
exit 3
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


@pytest.fixture
async def echo_endpoint() -> AsyncIterator[str]:
    """An HTTP check target that echoes the token of its URL in its body (a careless API)."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text=f"ok, you sent token={request.query.get('token')}")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/healthz"
    await runner.cleanup()


@pytest.fixture
def service_logs() -> Iterator[io.StringIO]:
    """What the in-process services log, as JSON lines (the production renderer)."""
    stream = io.StringIO()
    configure_logging("security-test", "debug", "json", stream=stream)
    yield stream
    reset_logging()


def pipeline(http_url: str) -> str:
    stages = [
        {
            "name": "ANALYSIS",
            "id": "analysis",
            "with": {
                "duration": "2s",
                "https": [{"url": http_url, "interval": "1s", "failureLimit": 5}],
            },
        },
        {
            "name": "SCRIPT_RUN",
            "id": "script",
            "with": {
                "run": SCRIPT,
                "env": {"PLAIN": "visible"},
                "secretEnv": {"API_TOKEN": SECRET_ENV},
            },
        },
    ]
    text = yaml.safe_dump({"pipeline": {"stages": stages}}, sort_keys=False)
    return "".join(f"  {line}\n" for line in text.splitlines())


def write_control(tmp_path: Path, harness: Harness) -> Path:
    """A `slipway.yaml` with a credential of every kind, its password in a file."""
    (tmp_path / "prom-password").write_text(PROM_PASSWORD + "\n")
    return write_control_config(
        tmp_path / "slipway.yaml",
        remote=harness.work.url,
        kubeconfig=harness.kubeconfig,
        analysisProviders=[
            {
                "name": "prom",
                "type": "PROMETHEUS",
                "config": {"address": "http://127.0.0.1:9", "passwordFile": "prom-password"},
            }
        ],
        notifications={
            "receivers": [
                {"name": "slack", "slack": {"hookURL": SLACK_HOOK}},
                {
                    "name": "audit",
                    "webhook": {
                        "url": f"https://audit.example/hook?token={WEBHOOK_TOKEN}",
                        "signatureValue": SIGNING_SECRET,
                    },
                },
            ]
        },
    )


def around(haystack: bytes, needle: str) -> bytes:
    """The text around `needle`, to say where a secret leaked."""
    at = haystack.find(needle.encode())
    return haystack[max(at - 200, 0) : at + 50]


async def recorded_text(harness: Harness) -> tuple[bytes, str]:
    """The whole events table (payloads and metadata) and every stage log line."""
    pool = harness.store.pool
    rows = await pool.fetch("SELECT payload, metadata::text AS metadata FROM events")
    events = b"\n".join(bytes(r["payload"]) + r["metadata"].encode() for r in rows)
    logs = await pool.fetch("SELECT message FROM stage_logs")
    return events, "\n".join(r["message"] for r in logs)


async def test_no_secret_reaches_the_log_the_stage_logs_or_the_service_logs(
    harness: Harness, tmp_path: Path, echo_endpoint: str, service_logs: io.StringIO
) -> None:
    """Every configured credential, Secret value, secret env value and URL token is masked."""
    control_config(str(write_control(tmp_path, harness)))  # as every service starts
    get_logger("slipway.test").warning("probe", detail=f"the password is {PROM_PASSWORD}")
    files = {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(
            extra=pipeline(f"{echo_endpoint}?token={URL_TOKEN}")
        ),
        f"{APP_PATH}/manifests.yaml": DEPLOYMENT.format(tag="v1", replicas=1) + SECRET_MANIFEST,
    }
    service, consumer = analysis_replica(harness, "a1", {})
    async with harness.running_app(), running(consumer.run, service.schedule):
        commit = harness.work.commit(files, "secrets everywhere")
        await harness.plan("d1", commit)
        done = await harness.completed("d1", within=60)

    events, stage_logs = await recorded_text(harness)
    logged = service_logs.getvalue()
    for secret in ALL_SECRETS:
        assert secret.encode() not in events, f"in the events table: {around(events, secret)!r}"
        assert secret not in stage_logs, f"{secret} is in a stage log"
        assert secret not in logged, f"{secret} is in the service logs"

    # Each path was really taken (so the absences above mean something).
    assert done.status == "FAILURE"
    history = await harness.events("d1")
    script = next(e for e in history if isinstance(e, StageCompleted) and e.stage_id == "script")
    assert script.reason.startswith("the script exited with code 3: ")
    assert f"last words {MASK} {MASK}" in script.reason
    assert f"token={MASK} and plain visible" in stage_logs
    assert "kind: Secret" in stage_logs  # the manifest was printed, its values masked
    planned = next(e for e in history if isinstance(e, DeploymentPlanned))
    options = {s.id: json.loads(s.options_json) for s in planned.stages}
    assert options["script"]["secretEnv"] == {"API_TOKEN": MASK}
    analysis = [
        r.event
        for r in await harness.store.read_stream(f"analysis-{analysis_id_of('d1', 'analysis')}")
    ]
    measured = [e for e in analysis if isinstance(e, AnalysisMeasured)]
    assert measured and all(m.status_code == 200 for m in measured)
    assert measured[0].values == (f"ok, you sent token={MASK}",)
    assert f"token={MASK}" in measured[0].query
    assert "the password is " + MASK in logged


async def test_secret_changes_are_masked_in_the_plan_and_its_preview(
    work: WorkRepo, tmp_path: Path
) -> None:
    """A Secret whose data changes: the diff, summary and preview show its keys, not values."""
    old_value, new_value = "old-secret-value-42", "new-secret-value-43"

    def files(value: str) -> dict[str, str | bytes | None]:
        manifest = SECRET_MANIFEST.replace(SECRET_DATA, value).replace(SECRET_STRING, value)
        return {
            f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=""),
            f"{APP_PATH}/manifests.yaml": DEPLOYMENT.format(tag="v1", replicas=1) + manifest,
        }

    old_commit = work.commit(files(old_value), "old")
    new_commit = work.commit(files(new_value), "new")
    repo = GitCache(tmp_path / "cache").repository(work.url)
    await repo.fetch()
    old = await load_deploy_source(repo, old_commit, APP_PATH, ".pipe.yaml")
    new = await load_deploy_source(repo, new_commit, APP_PATH, ".pipe.yaml")
    plan = make_plan(
        new.spec,
        TriggerInfo(strategy=Strategy.QUICK_SYNC),
        new.manifests,
        old.manifests,
        running_commit=old_commit,
    )
    diff = plan.decision.diff
    assert diff is not None and diff.changed
    shown = "\n".join((diff.render(), diff.summary, json.dumps(diff.to_dict(), default=str)))
    for value in (old_value, new_value, base64.b64encode(old_value.encode()).decode()):
        assert value not in shown
    assert MASK in diff.render()


async def test_a_receiver_quoting_our_credentials_back_is_recorded_masked(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A webhook receiver that answers 500 quoting the signing secret and the Slack hook URL:
    the NotificationFailed error in the log has them masked."""
    signing, slack_hook = "notifier-signing-secret-88", "https://hooks.slack.example/T/B/hook-66"

    async def careless(_request: web.Request) -> web.Response:
        text = f"cannot verify with {signing}; forward to {slack_hook}"
        return web.Response(status=500, text=text)

    app = web.Application()
    app.router.add_post("/hook", careless)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receivers = [
        {"name": "slack", "slack": {"hookURL": slack_hook}},
        {
            "name": "hook",
            "webhook": {"url": f"http://127.0.0.1:{port}/hook", "signatureValue": signing},
        },
    ]
    routes = [{"name": "all", "receiver": "hook", "events": ["DEPLOYMENT_FAILED"]}]
    path = write_control_yaml(
        tmp_path / "slipway.yaml", notifications={"routes": routes, "receivers": receivers}
    )
    control = control_config(str(path))  # as the notifier starts: its secrets registered
    try:
        await register(store, "web1", "web", "prd")
        async with notifier_running(control, backends, policy=RetryPolicy(max_attempts=1)):
            await store.append(
                "deployment-d1", new_events(failing_deployment("d1", "web1")), expected_version=ANY
            )
            await wait_until(recorded(store, "notification_failed", 1), within_s=20, what="failed")
    finally:
        await runner.cleanup()
    assert (await notification_events(store.pool))["notification_failed"] == 1
    rows = await store.pool.fetch("SELECT payload FROM events")
    events = b"\n".join(bytes(r["payload"]) for r in rows)
    assert signing.encode() not in events and slack_hook.encode() not in events
    assert f"cannot verify with {MASK}".encode() in events


def test_recorded_options_keep_secret_env_names_only_and_mask_url_tokens() -> None:
    """A plan records `secretEnv` names (values masked) and a check URL without its token."""
    script = recorded_options(
        "SCRIPT_RUN", {"run": "deploy", "env": {"A": "1"}, "secretEnv": {"KEY": "v-123456"}}
    )
    assert script == {"run": "deploy", "env": {"A": "1"}, "secretEnv": {"KEY": MASK}}
    analysis = recorded_options(
        "ANALYSIS", {"https": [{"url": "https://h/x?access_token=tok-999&a=1"}]}
    )
    assert analysis == {"https": [{"url": f"https://h/x?access_token={MASK}&a=1"}]}


def test_redactor_masks_values_in_every_form_and_credentials_by_their_place() -> None:
    """Values as is, percent-encoded, base64 (Secret data), per key line; URL and header
    credentials by pattern; short values never registered."""
    redactor = Redactor()
    redactor.add("p@ss word!", "abc")
    redactor.add(base64.b64encode(b"db-password-1").decode(), encoded=True)
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    redactor.add(key)
    text = (
        "p@ss word! p%40ss%20word%21 db-password-1 ZGItcGFzc3dvcmQtMQ== abc "
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC "
        "https://bob:hunter22@git.example/r.git https://ghp_tok123@github.com/o/r "
        "ssh://git@github.com/o/r http://h/q?a=1&token=t1&sig=s1&X-Amz-Signature=s2 "
        "Authorization: Bearer abc123def456ghi DB_PASSWORD=pw-7 Basic dXNlcjpwYXNz"
    )
    masked = redactor.redact(text)
    leaked: tuple[str, ...] = (
        "p@ss",
        "p%40ss",
        "db-password-1",
        "ZGItcGFzc3dvcmQtMQ==",
        "MIIEvQ",
        "hunter22",
    )
    leaked += ("ghp_tok123", "t1&", "s1&", "=s2", "abc123def456ghi", "pw-7", "dXNlcjpwYXNz")
    for secret in leaked:
        assert secret not in masked, secret
    assert " abc " in masked  # too short to register: would garble every log
    assert "https://bob:*****@git.example/r.git" in masked
    assert "ssh://git@github.com/o/r" in masked
    prose = "Basic authentication failed; use Bearer authentication"
    assert redactor.redact(prose) == prose


def test_a_single_field_is_masked_whatever_it_holds() -> None:
    """Log fields are redacted one by one, and most need no pattern (a fast path skips the
    credential patterns for text without `:`, `=`, `@` or whitespace): each form alone, with
    the least it takes to match, is still masked; a registered value is masked anywhere."""
    redactor = Redactor()
    redactor.add("plainsecretvalue")
    fields = {
        "https://ghp_tok123@github.com/o/r": "ghp_tok123",
        "?token=t1": "t1",
        "Bearer\u2003abc123def456ghi": "abc123def456ghi",
        "password:hunter22": "hunter22",
        "api_key=k-123456": "k-123456",
        "xplainsecretvaluex": "plainsecretvalue",
    }
    for field, secret in fields.items():
        assert secret not in redactor.redact(field), field
    for plain in ("d8f1c2a0b3e4", "deployment_triggered", "app-1.prd_v2", ""):
        assert redactor.redact(plain) == plain


def test_excerpt_redacts_before_it_cuts_and_is_printable() -> None:
    """An excerpt never leaves part of a secret unmasked, and holds no NUL or escape codes."""
    REDACTOR.add("excerpt-secret-0987")
    quoted = excerpt(b"x" * 10 + b"excerpt-secret-0987\x00\x1b[31m" + b"y" * 500, 20)
    assert "excerpt-sec" not in quoted and "\x00" not in quoted and "\x1b" not in quoted
    assert quoted.endswith("more characters)")


def test_control_secrets_read_the_files_and_kubeconfig_credentials(tmp_path: Path) -> None:
    """Inline credentials, the files the control config names, and kubeconfig tokens."""
    (tmp_path / "pw").write_text("file-password-1\n")
    (tmp_path / "kubeconfig").write_text(
        yaml.safe_dump({"users": [{"name": "u", "user": {"token": "kube-token-1"}}]})
    )
    path = write_control_config(
        tmp_path / "slipway.yaml",
        remote="https://deploy:remote-pass-1@git.example/config.git",
        kubeconfig=tmp_path / "kubeconfig",
        analysisProviders=[
            {
                "name": "p",
                "type": "PROMETHEUS",
                "config": {"address": "http://p", "passwordFile": "pw"},
            }
        ],
        notifications={"receivers": [{"name": "s", "slack": {"hookURL": "https://hooks/x/y"}}]},
        secretManagement={
            "config": {"privateKeyFile": "key.pem", "privateKeyData": "a2V5LWRhdGE="}
        },
    )
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nprivate-key-1\n")
    found = control_secrets(control_config(str(path)))
    secrets = ("file-password-1", "kube-token-1", "remote-pass-1", "https://hooks/x/y")
    for secret in (*secrets, "private-key-1", "a2V5LWRhdGE="):
        assert any(secret in value for value in found), secret
    assert kubeconfig_secrets("not: [yaml") == []


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_service_logs_mask_secrets_in_fields_exceptions_and_library_records(fmt: str) -> None:
    """Our fields, an exception's text and a stdlib library's record are all redacted."""
    REDACTOR.add("log-secret-value-2468")
    stream = io.StringIO()
    configure_logging("security-test", "info", fmt, stream=stream)  # type: ignore[arg-type]
    try:
        log = get_logger("slipway.test")
        log.info(
            "fields",
            url="nats://svc:nats-pw-1357@nats:4222",
            nested={"a": ["log-secret-value-2468"]},
        )
        try:
            raise ValueError("boom log-secret-value-2468")
        except ValueError:
            log.exception("crashed")
        logging.getLogger("asyncpg").warning("lib says %s", "log-secret-value-2468")
    finally:
        reset_logging()
    text = stream.getvalue()
    assert "log-secret-value-2468" not in text and "nats-pw-1357" not in text
    assert text.count(MASK) >= 4


def test_diff_rendering_redacts_registered_secrets_and_url_tokens() -> None:
    """A ConfigMap quoting a registered secret or a tokened URL renders them masked."""
    REDACTOR.add("configmap-secret-1122")

    class M:
        def __init__(self, data: dict[str, str]) -> None:
            self.api_version, self.kind, self.name, self.namespace = "v1", "ConfigMap", "c", ""
            self.body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": data,
            }

    old = M({"db": "x", "hook": "https://h/p?token=old-tok-1"})
    new = M({"db": "configmap-secret-1122", "hook": "https://h/p?token=new-tok-2"})
    diff = diff_manifests([old], [new])
    shown = diff.render() + json.dumps(diff.to_dict())
    for secret in ("configmap-secret-1122", "old-tok-1", "new-tok-2"):
        assert secret not in shown


def test_kubernetes_api_errors_are_quoted_short_and_redacted() -> None:
    """An API server (or a proxy in front of it) answering with a huge body that echoes a
    Secret's value: the error people and the log see is a short, masked excerpt."""
    REDACTOR.add("k8s-echoed-secret-5566")
    body = "<html>" + "x" * 50_000 + " k8s-echoed-secret-5566 \x00</html>"
    error = api_error(ApiException(status=502, reason="Bad Gateway"), "apply", "Secret a/b")
    echoed = api_error(
        ApiException(
            http_resp=_Response(502, "Bad Gateway", "k8s-echoed-secret-5566 " + body),  # type: ignore[arg-type]
        ),
        "apply",
        "Secret a/b",
    )
    assert str(error).startswith("apply Secret a/b: Bad Gateway")
    text = str(echoed)
    assert "k8s-echoed-secret-5566" not in text and "\x00" not in text
    assert len(text) < 1200 and text.startswith(f"apply Secret a/b: {MASK}")


class _Response:
    """What `ApiException(http_resp=…)` reads of a response."""

    def __init__(self, status: int, reason: str, data: str) -> None:
        self.status, self.reason, self.data = status, reason, data.encode()

    def getheaders(self) -> dict[str, str]:
        return {}
