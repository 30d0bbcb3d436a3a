"""Real `helm template` on real charts: a local path with every `helmOptions`, a chart
repository and a `gitRemote` (both served over HTTP here), and the tool version a config
pins (`helmVersion`, `kubectlVersion`, `kustomizeVersion`) chosen among those installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shared.config import (
    ConfigError,
    Manifest,
    load_application_config,
    load_control_config,
    render_manifests,
)
from shared.config.chart_repositories import install_chart_repositories
from shared.config.tool_versions import installed_versions, reported_version, select_tool
from tests.support.helm import (
    chart_repository,
    git_chart_remote,
    helm,
    needs_helm,
    serve_directory,
    write_chart,
)

HEAD = "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: web\n"


def _render(repo: Path, input_yaml: str) -> dict[str, Manifest]:
    app = repo / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "app.pipecd.yaml").write_text(HEAD + "  input:\n" + input_yaml)
    config = load_application_config(app / "app.pipecd.yaml")
    return {f"{m.kind}/{m.name}": m for m in render_manifests(app, config, repo_root=repo)}


@needs_helm
def test_local_chart_with_every_helm_option(tmp_path: Path) -> None:
    """valueFiles, setFiles, setValues, releaseName, apiVersions, kubeVersion and namespace
    all reach helm; CRDs are rendered and hooks are not, as PipeCD's flags do."""
    repo = tmp_path / "repo"
    write_chart(repo / "app" / "chart")
    (repo / "app" / "prd-values.yaml").write_text("replicas: 3\ngreeting: hi from prd\n")
    (repo / "app" / "motd.txt").write_text("welcome")
    rendered = _render(
        repo,
        "    namespace: shop\n    helmChart: {path: chart}\n    helmOptions:\n"
        "      releaseName: shop-web\n      valueFiles: [prd-values.yaml]\n"
        "      setFiles: {motd: motd.txt}\n      setValues: {image.tag: v2.1.0}\n"
        "      apiVersions: [monitoring.coreos.com/v1]\n      kubeVersion: '1.29.0'\n",
    )
    assert sorted(rendered) == [
        "ConfigMap/shop-web-config",
        "CustomResourceDefinition/widgets.example.com",
        "Deployment/shop-web",
    ]  # no hook Job
    deployment = rendered["Deployment/shop-web"]
    assert deployment.namespace == "shop"
    assert deployment.body["spec"]["replicas"] == 3
    image = deployment.body["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "web:v2.1.0"
    annotations = deployment.body["metadata"]["annotations"]
    assert annotations["kube-version"] == "v1.29.0"
    assert annotations["has-monitoring"] == "true"
    config = rendered["ConfigMap/shop-web-config"].body["data"]
    assert config == {"greeting": "hi from prd", "motd": "welcome"}


@needs_helm
def test_chart_from_a_chart_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chart repository by URL and by the name helm knows it by (`helm repo add`), at the
    pinned version; a version it does not have is an error naming helm's complaint."""
    served = tmp_path / "served"
    served.mkdir()
    with serve_directory(served) as url:
        chart_repository(served, url, ("1.0.0", "1.1.0"))
        by_url = _render(
            tmp_path / "a", f"    helmChart: {{repository: '{url}', name: web, version: 1.0.0}}\n"
        )
        annotations = by_url["Deployment/web"].body["metadata"]["annotations"]
        assert annotations["chart-version"] == "1.0.0"

        helm_home = tmp_path / "helm-home"
        for variable, sub in (
            ("HELM_REPOSITORY_CONFIG", "repositories.yaml"),
            ("HELM_REPOSITORY_CACHE", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_CACHE_HOME", "cache-home"),
            ("HELM_DATA_HOME", "data"),
        ):
            monkeypatch.setenv(variable, str(helm_home / sub))
        helm("repo", "add", "team", url, env=dict(os.environ))
        by_name = _render(
            tmp_path / "b", "    helmChart: {repository: team, name: web, version: 1.1.0}\n"
        )
        annotations = by_name["Deployment/web"].body["metadata"]["annotations"]
        assert annotations["chart-version"] == "1.1.0"

        with pytest.raises(ConfigError, match="helm template failed for web"):
            _render(
                tmp_path / "c",
                f"    helmChart: {{repository: '{url}', name: web, version: 9.9.9}}\n",
            )


@needs_helm
def test_chart_from_a_git_remote_at_a_ref(tmp_path: Path) -> None:
    """`gitRemote` + `ref` + `path`: the remote cloned, the ref checked out, the chart rendered."""
    git_chart_remote(tmp_path / "remote")
    with serve_directory(tmp_path / "remote" / "served") as url:
        remote = f"{url}/charts.git"
        for ref, version in (("v1", "1.0.0"), ("v2", "2.0.0"), ("", "2.0.0")):
            rendered = _render(
                tmp_path / f"repo-{ref or 'head'}",
                f"    helmChart: {{gitRemote: '{remote}', ref: '{ref}', path: charts/web}}\n",
            )
            chart_version = rendered["Deployment/web"].body["metadata"]["annotations"]
            assert chart_version["chart-version"] == version
        with pytest.raises(ConfigError, match="ref nope"):
            _render(
                tmp_path / "bad-ref",
                f"    helmChart: {{gitRemote: '{remote}', ref: nope, path: charts/web}}\n",
            )


# --- tool versions ----------------------------------------------------------------------

PATH = os.environ.get("PATH", "")
KUBECTLS = installed_versions("kubectl", PATH)
needs_kubectls = pytest.mark.skipif(
    len(KUBECTLS) < 2, reason="several kubectl.1.x versions are not installed side by side"
)


@needs_kubectls
def test_a_pinned_kubectl_is_chosen_among_the_installed_versions() -> None:
    """`kubectlVersion: 1.31.2` is met by `kubectl.1.31` (same major.minor)."""
    name = sorted(KUBECTLS)[0]
    minor = name.removeprefix("kubectl.")
    chosen = select_tool(
        "kubectl", f"{minor}.2", path=PATH, field="input.kubectlVersion", config="c"
    )
    assert chosen == KUBECTLS[name]


@needs_kubectls
def test_a_pinned_version_not_installed_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        select_tool("kubectl", "1.19.3", path=PATH, field="input.kubectlVersion", config="app.yaml")
    message = str(caught.value)
    assert message.startswith("app.yaml: input.kubectlVersion: kubectl 1.19.3 is not installed")
    assert sorted(KUBECTLS)[0] in message


@needs_kubectls
def test_kustomize_version_picks_the_kubectl_that_has_it_built_in(tmp_path: Path) -> None:
    """No kustomize binary: `kustomizeVersion` renders with the kubectl that embeds it,
    and a kustomize none of them has is an error naming the field."""
    if shutil.which("kustomize"):
        pytest.skip("a kustomize binary is installed: it is used instead")
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "kustomization.yaml").write_text("resources: [cm.yaml]\nnamePrefix: k-\n")
    (repo / "app" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    embedded = {found for b in KUBECTLS.values() if (found := reported_version(b, "kustomize"))}
    major, minor = sorted(embedded)[0]
    rendered = _render(repo, f"    kustomizeVersion: {major}.{minor}.0\n")
    assert list(rendered) == ["ConfigMap/k-c"]
    with pytest.raises(
        ConfigError, match=r"input\.kustomizeVersion: kustomize 2\.0\.3 is not installed"
    ):
        _render(repo, "    kustomizeVersion: 2.0.3\n")


@needs_helm
def test_helm_version_pin(tmp_path: Path) -> None:
    """The installed helm meets its own major.minor; another pinned version is an error."""
    assert shutil.which("helm") is not None
    version = helm("version", "--template", "{{.Version}}").lstrip("v")
    major_minor = ".".join(version.split(".")[:2])
    repo = tmp_path / "repo"
    write_chart(repo / "app" / "chart")
    rendered = _render(repo, f"    helmVersion: {major_minor}.0\n    helmChart: {{path: chart}}\n")
    assert "Deployment/web" in rendered
    with pytest.raises(ConfigError, match=r"input.helmVersion: helm 3.1.1 is not installed"):
        _render(repo, "    helmVersion: 3.1.1\n    helmChart: {path: chart}\n")


PIPED = """\
apiVersion: pipecd.dev/v1beta1
kind: Piped
spec:
  projectID: shop
  pipedID: p1
  repositories:
    - repoId: config
      remote: https://git.example.com/config.git
      branch: main
  chartRepositories:
    - name: team
      address: {url}
    - type: GIT
      gitRemote: git@github.com:acme/charts.git
"""


@needs_helm
def test_the_piped_configs_chart_repositories_reach_helm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`chartRepositories` of a `kind: Piped` control config: added for helm at start-up (its
    repositories file), so `repository: team` renders; the index is fetched on first use."""
    for variable in ("HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE"):
        monkeypatch.setenv(variable, str(tmp_path / "unused"))  # restored after the test
    served = tmp_path / "served"
    served.mkdir()
    with serve_directory(served) as url:
        chart_repository(served, url, ("3.0.0",))
        control_file = tmp_path / "piped.yaml"
        control_file.write_text(PIPED.format(url=url))
        control = load_control_config(control_file)
        assert [(r.name, r.address) for r in control.spec.chart_repositories] == [("team", url)]
        assert any("GIT chart repositories" in w.message for w in control.warnings)
        written = install_chart_repositories(
            control.spec.chart_repositories, directory=tmp_path / "helm"
        )
        assert written is not None and oct(written.stat().st_mode & 0o777) == "0o600"
        rendered = _render(
            tmp_path / "repo", "    helmChart: {repository: team, name: web, version: 3.0.0}\n"
        )
    annotations = rendered["Deployment/web"].body["metadata"]["annotations"]
    assert annotations["chart-version"] == "3.0.0"
    assert (tmp_path / "helm" / "cache" / "team-index.yaml").is_file()  # updated on first use
