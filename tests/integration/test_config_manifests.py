"""Rendering an application's manifests: plain YAML, Kustomize (really run) and Helm."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shared.config import (
    ConfigError,
    ConfigFileError,
    Manifest,
    load_application_config,
    render_manifests,
    render_manifests_async,
)
from tests.support.paths import CONFIG_FIXTURES

REPO = CONFIG_FIXTURES / "repo"
APP = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: demo
"""


def _render(app_dir: Path, repo_root: Path | None = REPO) -> list[Manifest]:
    path = next(p for p in app_dir.iterdir() if p.name.endswith((".pipecd.yaml", ".pipe.yaml")))
    app = load_application_config(path)
    return render_manifests(app_dir, app, repo_root=repo_root)


def test_plain_directory_renders_every_document_of_every_file() -> None:
    """Without input.manifests, every YAML file of the app dir renders, document by document."""
    manifests = _render(REPO / "account" / "dev")
    assert [m.key for m in manifests] == [
        "apps/Deployment/account/account",
        "/Service/account/account",
        "/Namespace//account",
    ]
    deployment = manifests[0]
    assert deployment.api_version == "apps/v1"
    assert deployment.body["spec"]["replicas"] == 2
    assert deployment.source.endswith("account/dev/deployment.yaml")


def test_listed_manifests_only() -> None:
    """input.manifests limits rendering to the listed files."""
    manifests = _render(REPO / "account" / "prd")
    assert "not-rendered" not in {m.name for m in manifests}
    assert {m.kind for m in manifests} == {"Deployment", "Service", "Namespace"}


def _kubectl_or_skip() -> None:
    if shutil.which("kubectl") or shutil.which("kustomize"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("kubectl (or kustomize) is required on CI to render Kustomize inputs")
    pytest.skip("neither kubectl nor kustomize is installed")


def test_kustomize_overlay_renders_with_kubectl() -> None:
    """A Kustomize overlay renders for real: prefix, namespace, image tag, generated ConfigMap."""
    _kubectl_or_skip()
    manifests = _render(REPO / "kustomize" / "overlay")
    by_kind = {m.kind: m for m in manifests}
    assert set(by_kind) == {"Deployment", "ConfigMap"}
    deployment = by_kind["Deployment"]
    assert deployment.key == "apps/Deployment/web/prd-web"
    container = deployment.body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/web:v2"
    assert by_kind["ConfigMap"].name.startswith("prd-web-config-")
    assert by_kind["ConfigMap"].body["data"] == {"LOG_LEVEL": "info"}


async def test_async_rendering_matches() -> None:
    """render_manifests_async gives the same manifests as the blocking call."""
    _kubectl_or_skip()
    path = REPO / "kustomize" / "overlay" / "app.pipecd.yaml"
    app = load_application_config(path)
    rendered = await render_manifests_async(app.app_dir, app, repo_root=REPO)
    assert rendered == render_manifests(app.app_dir, app, repo_root=REPO)


def test_kustomize_options_pass_through_in_either_spelling(tmp_path: Path) -> None:
    """kustomizeOptions become flags; PipeCD's load_restrictor spelling works with kubectl."""
    _kubectl_or_skip()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.pipecd.yaml").write_text(
        APP + "  input:\n    kustomizeOptions:\n      load_restrictor: LoadRestrictionsRootOnly\n"
    )
    (tmp_path / "app" / "kustomization.yaml").write_text("resources:\n  - ../base\n")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    (tmp_path / "base" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n"
    )
    assert [m.name for m in _render(tmp_path / "app", repo_root=tmp_path)] == ["shared"]


def test_load_restrictions_none_is_refused_with_the_reason(tmp_path: Path) -> None:
    """LoadRestrictionsNone (reading files outside the kustomization) is a config error."""
    (tmp_path / "app.pipecd.yaml").write_text(
        APP + "  input:\n    kustomizeOptions:\n      load_restrictor: LoadRestrictionsNone\n"
    )
    with pytest.raises(ConfigError, match="LoadRestrictionsNone is not allowed: it lets"):
        load_application_config(tmp_path / "app.pipecd.yaml")


def test_kustomize_failure_is_a_config_error(tmp_path: Path) -> None:
    """A broken kustomization is a ConfigError carrying kustomize's message."""
    _kubectl_or_skip()
    (tmp_path / "app.pipecd.yaml").write_text(APP)
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    with pytest.raises(ConfigError, match="kustomize build failed for demo"):
        _render(tmp_path, repo_root=tmp_path)


def test_kustomize_base_that_is_not_in_the_repository_is_refused(tmp_path: Path) -> None:
    """A missing base would be fetched as a remote one: refused before kustomize runs."""
    (tmp_path / "app.pipecd.yaml").write_text(APP)
    (tmp_path / "kustomization.yaml").write_text(
        "resources:\n  - github.com/acme/bases//web?ref=v1\n"
    )
    with pytest.raises(ConfigError, match="remote bases are not fetched"):
        _render(tmp_path, repo_root=tmp_path)


def test_helm_without_helm_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Helm input says helm is required when helm is not on PATH."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError) as caught:
        _render(REPO / "helm-chart" / "app")
    assert str(caught.value).startswith(
        "helm is required to render the Helm chart of helm-app (input.helmChart in "
    )


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
def test_helm_chart_renders_with_helm() -> None:
    """A local chart renders with helm template, values applied."""
    manifests = _render(REPO / "helm-chart" / "app")
    assert [(m.kind, m.name) for m in manifests] == [("ConfigMap", "helm-app")]
    assert manifests[0].body["data"] == {"replicas": "1"}


def test_listed_manifest_outside_the_repository_is_refused(tmp_path: Path) -> None:
    """input.manifests cannot reach outside the repository."""
    app_dir = tmp_path / "repo" / "app"
    app_dir.mkdir(parents=True)
    (tmp_path / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    (app_dir / "app.pipecd.yaml").write_text(APP + "  input:\n    manifests: [../../secret.yaml]\n")
    with pytest.raises(ConfigError, match="points outside the repository"):
        _render(app_dir, repo_root=tmp_path / "repo")


def test_a_document_that_is_not_an_object_is_located(tmp_path: Path) -> None:
    """A manifest without kind or name is a ConfigFileError at its document."""
    (tmp_path / "app.pipecd.yaml").write_text(APP)
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\n")
    with pytest.raises(ConfigFileError) as caught:
        _render(tmp_path, repo_root=tmp_path)
    assert (caught.value.file, caught.value.line) == (str(tmp_path / "bad.yaml"), 1)
    assert "needs apiVersion, kind and metadata.name" in caught.value.problem


def test_namespace_comes_from_input_unless_set_or_cluster_scoped(tmp_path: Path) -> None:
    """input.namespace fills a missing namespace, never a cluster-scoped object's."""
    (tmp_path / "app.pipecd.yaml").write_text(APP + "  input:\n    namespace: team\n")
    (tmp_path / "objects.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: c}\n"
    )
    keys = [m.key for m in _render(tmp_path, repo_root=tmp_path)]
    assert keys == [
        "/ConfigMap/team/a",
        "/ConfigMap/other/b",
        "rbac.authorization.k8s.io/ClusterRole//c",
    ]
