"""What a config repository can make helm and git do: only fetch a chart and render it.

`gitRemote` never names a local path, `file://` or a transport helper (`ext::`
would run a program), the chart path stays inside the clone (a symlink out of
it too), `setValues` keys and values and the chart repository cannot become
options, and a pinned tool version names a version, never a binary to run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shared.config import ConfigError, ConfigFileError, load_application_config, render_manifests
from tests.support.helm import git, git_chart_remote, needs_helm, serve_directory, write_chart

HEAD = "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: web\n"


def _app(repo: Path, input_yaml: str) -> Path:
    app = repo / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "app.pipecd.yaml").write_text(HEAD + "  input:\n" + input_yaml)
    return app / "app.pipecd.yaml"


def _render(repo: Path, input_yaml: str) -> list[str]:
    path = _app(repo, input_yaml)
    config = load_application_config(path)
    return [m.name for m in render_manifests(path.parent, config, repo_root=repo)]


@pytest.mark.parametrize(
    "remote",
    [
        "file:///etc",
        "/srv/git/charts.git",
        "../charts.git",
        "ext::sh -c touch% {marker}",
        "--upload-pack=touch {marker}",
        "fd::17",
        "https://example.com/x.git\n--upload-pack=x",
    ],
)
def test_git_remote_that_is_not_a_remote_url_is_refused_at_load(
    tmp_path: Path, remote: str
) -> None:
    """The config error names the field; git never runs (no marker)."""
    marker = tmp_path / "pwned"
    text = remote.format(marker=marker).replace("\n", "\\n")
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(
            _app(tmp_path / "repo", f'    helmChart: {{gitRemote: "{text}", path: chart}}\n')
        )
    assert caught.value.field_path == "spec.input.helmChart.gitRemote"
    assert not marker.exists()


@needs_helm
def test_git_chart_path_cannot_leave_the_clone(tmp_path: Path) -> None:
    """`path: ../..` and a symlink in the remote's chart pointing out are both refused."""
    canary = tmp_path / "host-secret.yaml"
    canary.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leaked}\n")
    bare = git_chart_remote(tmp_path / "remote")
    work = tmp_path / "remote" / "work"
    (work / "charts" / "web" / "templates" / "leak.yaml").symlink_to(canary)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "leak", cwd=work)
    git("tag", "leak", cwd=work)
    git("push", "-q", "--tags", str(bare), "HEAD:main", cwd=work)
    git("update-server-info", cwd=bare)
    with serve_directory(tmp_path / "remote" / "served") as url:
        remote = f"{url}/charts.git"
        with pytest.raises(ConfigError, match="outside"):
            _render(tmp_path / "a", f"    helmChart: {{gitRemote: '{remote}', path: ../..}}\n")
        with pytest.raises(ConfigError) as caught:
            _render(
                tmp_path / "b",
                f"    helmChart: {{gitRemote: '{remote}', ref: leak, path: charts/web}}\n",
            )
    assert "leak.yaml" in str(caught.value)
    assert "leaked" not in str(caught.value)


@pytest.mark.parametrize(
    ("set_values", "field"),
    [
        ("{'a --post-renderer=./pwn.sh': x}", "spec.input.helmOptions.setValues"),
        ("{'a,b': x}", "spec.input.helmOptions.setValues"),
        ('{a: "x\\n--post-renderer=./pwn.sh"}', "spec.input.helmOptions.setValues.a"),
    ],
)
def test_set_values_keys_and_values_cannot_become_options(
    tmp_path: Path, set_values: str, field: str
) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(
            _app(
                tmp_path / "repo",
                f"    helmChart: {{path: chart}}\n    helmOptions: {{setValues: {set_values}}}\n",
            )
        )
    assert caught.value.field_path.startswith(field)


@needs_helm
def test_a_set_value_that_looks_like_an_option_is_only_a_value(tmp_path: Path) -> None:
    """`--set=image.tag=--post-renderer=./pwn.sh`: helm sets a value; pwn.sh never runs."""
    repo = tmp_path / "repo"
    write_chart(repo / "app" / "chart")
    marker = tmp_path / "pwned"
    pwn = repo / "app" / "pwn.sh"
    pwn.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    pwn.chmod(0o755)
    path = _app(
        repo,
        "    helmChart: {path: chart}\n"
        "    helmOptions: {setValues: {image.tag: '--post-renderer=./pwn.sh'}}\n",
    )
    config = load_application_config(path)
    manifests = render_manifests(path.parent, config, repo_root=repo)
    deployment = next(m for m in manifests if m.kind == "Deployment")
    image = deployment.body["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "web:--post-renderer=./pwn.sh"
    assert not marker.exists()


@pytest.mark.parametrize("repository", ["--repo=http://evil", "file:///etc", "../charts", "a b"])
def test_chart_repository_is_a_name_or_a_url(tmp_path: Path, repository: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(
            _app(tmp_path / "repo", f"    helmChart: {{repository: '{repository}', name: web}}\n")
        )
    assert caught.value.field_path == "spec.input.helmChart.repository"


@needs_helm
def test_a_pinned_version_never_names_a_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`helmVersion: ../../pwn` or a helm.3.17 the repository committed run nothing."""
    repo = tmp_path / "repo"
    write_chart(repo / "app" / "chart")
    marker = tmp_path / "pwned"
    planted = repo / "app" / "helm.3.17"
    planted.write_text(f"#!/bin/sh\ntouch {marker}\n")
    planted.chmod(0o755)
    with pytest.raises(ConfigError, match="is not a version like"):
        _render(repo, "    helmVersion: ../../pwn\n    helmChart: {path: chart}\n")
    real = subprocess.run(
        ["helm", "version", "--template", "{{.Version}}"], capture_output=True, text=True
    ).stdout.lstrip("v")
    minor = ".".join(real.split(".")[:2])
    # A relative PATH entry (the app directory is helm's cwd) must not find the planted one.
    monkeypatch.setenv("PATH", f".:{os.environ['PATH']}")
    assert "web" in _render(repo, f"    helmVersion: '{minor}'\n    helmChart: {{path: chart}}\n")
    assert not marker.exists()
