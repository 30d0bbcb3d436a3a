"""Encrypted secrets and attachments reach the cluster decrypted, and nothing else sees them.

The executor (with the key ring) applies the decrypted Secret to kubesim; the
planner's view of the same commit (no `Reveal`) holds only masks; the event
log and the stage logs never hold the plaintext (grepped).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kubesim import KubeSim
from services.drift.service import DriftDetector
from shared.config.control import KubernetesProviderConfig
from shared.deploysource import DeploySource, Reveal, load_deploy_source
from shared.errors import ConfigError
from shared.eventlog import NO_STREAM, new_events
from shared.events.catalog import ApplicationRegistered, ApplicationSyncStateChanged
from shared.events.streams import drift_stream
from shared.git import GitCache
from shared.planning.preview import compute_preview
from shared.platform import KubernetesPlatform
from shared.secrets import KeyRing, encrypt
from tests.support import Backends
from tests.support.executor import APP, APP_PATH, Harness, app_files
from tests.support.git_helpers import WorkRepo

PLAINTEXT = "s3cr3t-Pa55word-7f1c"
ATTACHED = "feature-flags-9d2e: on"

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: web-db
stringData:
  password: {{ .encryptedSecrets.password }}
  url: "postgres://web:{{ .encryptedSecrets.password }}@db/web"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
data:
  flags: "{{ .attachment.flags }}"
"""

# As PipeCD's docs have it: under `data`, the encrypted value being the secret's base64.
SECRET_IN_DATA = """\
apiVersion: v1
kind: Secret
metadata:
  name: web-db
data:
  password: {{ .encryptedSecrets.password }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
data:
  flags: "{{ .attachment.flags }}"
"""


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _files(
    key: rsa.RSAPrivateKey, secret: str = SECRET, value: str = PLAINTEXT
) -> dict[str, str | bytes | None]:
    extra = (
        "  encryption:\n"
        f"    encryptedSecrets: {{password: {encrypt(value, key.public_key())}}}\n"
        "    decryptionTargets: [secret.yaml]\n"
        "  attachment:\n"
        "    sources: {flags: config/flags.txt}\n"
        "    targets: [secret.yaml]\n"
    )
    files = app_files(extra=extra)
    files[f"{APP_PATH}/secret.yaml"] = secret
    files[f"{APP_PATH}/config/flags.txt"] = ATTACHED
    return files


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


async def _load(work: WorkRepo, commit: str, tmp_path: Path, reveal: Reveal | None) -> DeploySource:
    repo = GitCache(tmp_path / "cache").repository(work.url)
    await repo.fetch()
    return await load_deploy_source(repo, commit, APP_PATH, ".pipe.yaml", reveal=reveal)


async def test_the_planner_sees_masks_the_executor_the_values(work, tmp_path, key) -> None:
    commit = work.commit(_files(key), "secrets")
    planned = await _load(work, commit, tmp_path, None)
    secret = next(m for m in planned.manifests if m.kind == "Secret")
    assert secret.body["stringData"]["password"].startswith("masked:encryptedSecrets.password:")
    assert PLAINTEXT not in repr(planned)
    assert ATTACHED not in repr(planned)

    revealed = await _load(work, commit, tmp_path, Reveal(KeyRing([key])))
    secret = next(m for m in revealed.manifests if m.kind == "Secret")
    assert secret.body["stringData"] == {
        "password": PLAINTEXT,
        "url": f"postgres://web:{PLAINTEXT}@db/web",
    }
    settings = next(m for m in revealed.manifests if m.kind == "ConfigMap" and m.name != "web")
    assert settings.body["data"] == {"flags": ATTACHED}
    assert revealed.revealed == (PLAINTEXT, PLAINTEXT)


async def test_bad_targets_are_clear_errors_naming_file_and_name(work, tmp_path, key) -> None:
    unknown = SECRET.replace(".encryptedSecrets.password }}@", ".encryptedSecrets.pasword }}@")
    commit = work.commit(_files(key, unknown), "typo")
    with pytest.raises(ConfigError, match=r"web/prd/secret.yaml:7: .*\.pasword .*known: password"):
        await _load(work, commit, tmp_path, None)
    commit = work.commit(_files(key), "fine")
    with pytest.raises(ConfigError, match="no secretManagement private key is configured"):
        await _load(work, commit, tmp_path, Reveal(None))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError, match="'password' was not encrypted for this key"):
        await _load(work, commit, tmp_path, Reveal(KeyRing([stranger])))
    outside = _files(key)
    outside[f"{APP_PATH}/.pipe.yaml"] = str(outside[f"{APP_PATH}/.pipe.yaml"]).replace(
        "config/flags.txt", "../../../../etc/hostname"
    )
    commit = work.commit(outside, "escape")
    with pytest.raises(ConfigError, match=r"attachment\.sources\.flags points outside the repo"):
        await _load(work, commit, tmp_path, Reveal(KeyRing([key])))
    # A file that is not a target would reach the cluster with the placeholder as written.
    forgotten = _files(key)
    forgotten[f"{APP_PATH}/leak.yaml"] = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\n"
        'data: {password: "{{ .encryptedSecrets.password }}"}\n'
    )
    commit = work.commit(forgotten, "forgotten target")
    with pytest.raises(ConfigError, match=r"leak\.yaml.*not in encryption\.decryptionTargets"):
        await _load(work, commit, tmp_path, Reveal(KeyRing([key])))


async def test_the_cluster_gets_the_value_the_logs_never_do(
    backends: Backends,
    sim: KubeSim,
    work: WorkRepo,
    tmp_path: Path,
    key: rsa.RSAPrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    harness = await Harness.over(backends, sim, work, tmp_path)
    harness.replica("x1", secret_keys=KeyRing([key]))
    commit = work.commit(_files(key), "secrets")
    async with harness.running_app():
        await harness.plan("d1", commit, strategy="quick_sync")
        completed = await harness.completed("d1")
        assert completed.status == "SUCCESS", completed
    async with KubernetesPlatform(harness.kubeconfig) as cluster:
        live = await cluster.get("/Secret/shop/web-db")
        settings = await cluster.get("/ConfigMap/shop/web-settings")
    assert live is not None and settings is not None
    # A real API server folds stringData into data; kubesim may keep either.
    data = {k: base64.b64decode(v).decode() for k, v in live.get("data", {}).items()}
    data |= live.get("stringData", {})
    assert data["password"] == PLAINTEXT
    assert settings["data"]["flags"] == ATTACHED

    async with harness.store.pool.acquire() as conn:
        events = await conn.fetch("SELECT payload, metadata::text AS metadata FROM events")
        lines = await conn.fetch("SELECT message FROM stage_logs")
    stored = b"\n".join(r["payload"] + r["metadata"].encode() for r in events)
    logged = "\n".join(r["message"] for r in lines).encode()
    # The grep can find what is there: the commit is in both, in the same encoding.
    assert commit.encode() in stored and commit[:12].encode() in logged
    for secret in (PLAINTEXT.encode(), base64.b64encode(PLAINTEXT.encode()), ATTACHED.encode()):
        assert secret not in stored and secret not in logged
    # The services' own log lines (structlog, to stdout here) neither.
    service_log = capsys.readouterr().out
    assert "platform_applied" in service_log and "web-db" in service_log
    assert PLAINTEXT not in service_log and ATTACHED not in service_log


async def test_drift_compares_the_decrypted_secret_with_the_cluster(
    backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    """Drift renders with the key: the applied Secret is SYNCED; a changed one is OUT_OF_SYNC,
    and its summary does not quote the decrypted value."""
    store = backends.store
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    # `data`, as PipeCD's docs have it: the encrypted value is the base64 of the secret.
    # (Drift compares `data`; a cluster folds `stringData` into it.)
    encoded = base64.b64encode(PLAINTEXT.encode()).decode()
    head = work.commit(_files(key, SECRET_IN_DATA, encoded), "secrets")
    applied = await _load(work, head, tmp_path, Reveal(KeyRing([key])))
    async with KubernetesPlatform(kubeconfig) as cluster:
        await cluster.apply(
            applied.manifests,
            application_id=APP,
            deployment_id="d1",
            commit_hash=head,
            namespace="shop",
            auto_create_namespace=True,
        )
    await store.append(
        f"application-{APP}",
        new_events(
            [
                ApplicationRegistered(
                    application_id=APP,
                    name=APP,
                    repository_id="config",
                    path=APP_PATH,
                    config_filename=".pipe.yaml",
                    platform_provider="kubesim",
                )
            ]
        ),
        expected_version=NO_STREAM,
    )
    detector = DriftDetector(
        store=store,
        git=GitCache(tmp_path / "driftcache"),
        repositories={"config": work.url},
        platforms={"kubesim": KubernetesProviderConfig(kubeconfig_path=str(kubeconfig))},
        secret_keys=KeyRing([key]),
    )

    async def states() -> list[ApplicationSyncStateChanged]:
        return [
            r.event
            for r in await store.read_stream(drift_stream(APP))
            if isinstance(r.event, ApplicationSyncStateChanged)
        ]

    await detector.check_all()
    first = await states()
    assert [s.state for s in first] == ["SYNCED"], first
    secret = next(m for m in applied.manifests if m.kind == "Secret")
    changed = {**secret.body, "data": {"password": base64.b64encode(b"by-hand").decode()}}
    async with KubernetesPlatform(kubeconfig) as cluster:
        await cluster.apply(
            [msgspec.structs.replace(secret, body=changed)],
            application_id=APP,
            deployment_id="d1",
            commit_hash=head,
            namespace="shop",
        )
    await detector.check_all()
    found = await states()
    assert [s.state for s in found] == ["SYNCED", "OUT_OF_SYNC"]
    assert "web-db" in found[-1].summary
    for text in (found[-1].summary, found[-1].diff):
        assert PLAINTEXT not in text and encoded not in text


async def test_plan_preview_shows_the_change_but_never_the_value(
    work: WorkRepo, tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    """A branch that changes a secret previews as a change, value-free: also in a ConfigMap,
    whose diff shows values (only masking the template keeps the secret out of it)."""
    in_config_map = SECRET + '  dsn: "db:{{ .encryptedSecrets.password }}"\n'
    work.commit(_files(key, in_config_map), "secrets")
    work.checkout_new_branch("rotate")
    work.commit(_files(key, in_config_map, value="a-new-s3cret-value"), "new password")
    preview = await compute_preview(
        GitCache(tmp_path / "previewcache"),
        work.url,
        base_branch="main",
        head_branch="rotate",
    )
    answer = json.dumps(preview.to_dict())
    (result,) = preview.results
    assert result.plan is not None and "web-db" in answer, answer
    for value in (PLAINTEXT, "a-new-s3cret-value", ATTACHED):
        assert value not in answer
    assert '"path": "data.dsn", "old": "db:masked:encryptedSecrets.password:' in answer
