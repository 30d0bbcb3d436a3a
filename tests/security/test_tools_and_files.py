"""Issue 10, items 1-2: a pushed branch cannot run code through a tool nor read the host's files.

Attacks are pushed as unmerged branches of a real git repository and rendered
the way plan preview renders them (`shared.planning.preview`, the API route,
the CLI) or the planner plans them. Code execution is proven by a real,
executable `pwn.sh` committed to the branch that touches a marker file; file
reads by a canary file outside the repository whose unique text must appear
nowhere: not in an answer, an event, a log line or CLI output.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog

from services.api.deps import PlanPreviewSource
from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key
from shared.config import (
    ConfigFileError,
    load_analysis_templates,
    load_application_config,
    load_control_config,
)
from shared.config.manifests import render_manifests
from shared.config.repo_files import check_tree, inside_repository
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.catalog import DeploymentPlanFailed
from shared.git import GitCache
from shared.planning.preview import Preview, compute_preview
from tests.support import Backends, running
from tests.support.api import auth_headers, served_api
from tests.support.cli import plan_preview
from tests.support.git_helpers import WorkRepo, git
from tests.support.planner import APP, Harness, wait_for_event
from tests.support.seed_repo import seed_files

APP_DIR = "account/dev"
CONFIG = f"{APP_DIR}/.pipe.yaml"


def app_config(extra: str = "") -> str:
    """account-dev's config; `extra` is YAML indented under `spec:`."""
    return (
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n"
        "  name: account-dev\n  labels:\n    env: dev\n" + extra
    )


@dataclass
class Outside:
    """Files outside the repository: canaries a branch must not read, a marker it must not make."""

    root: Path
    secret: str

    @property
    def token(self) -> Path:
        """A one-line secret, like a service account token."""
        return self.root / "token"

    @property
    def manifest(self) -> Path:
        """A valid Kubernetes object holding the secret (it would render)."""
        return self.root / "secret.yaml"

    @property
    def base(self) -> Path:
        """A kustomize base outside the repository whose object holds the secret."""
        return self.root / "base"

    @property
    def marker(self) -> Path:
        return self.root / "pwned"

    def assert_never_seen(self, *texts: str) -> None:
        for text in texts:
            assert self.secret not in text
            assert self.secret[-12:] not in text  # not even a cut excerpt of it


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    root = tmp_path / "host"
    root.mkdir()
    found = Outside(root, f"CANARY-{uuid.uuid4().hex}")
    found.token.write_text(found.secret + "\n")
    cm = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leaked, namespace: default}\n"
        f"data: {{secret: {found.secret}}}\n"
    )
    found.manifest.write_text(cm)
    found.base.mkdir()
    (found.base / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    (found.base / "cm.yaml").write_text(cm)
    return found


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    """The seed's config repository on `main`; attacks go on the branch `attack`."""
    repo = WorkRepo(tmp_path / "config")
    repo.commit(seed_files("account"), "initial")
    repo.checkout_new_branch("attack")
    return repo


def push(
    work: WorkRepo,
    files: dict[str, str],
    *,
    symlinks: dict[str, str | Path] | None = None,
    pwn: Outside | None = None,
) -> str:
    """Commit `files`, `symlinks` (name → target) and, with `pwn`, an executable pwn.sh."""
    names = list(files)
    for name, target in (symlinks or {}).items():
        path = work.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        os.symlink(target, path)
        names.append(name)
    if pwn is not None:
        script = work.path / APP_DIR / "pwn.sh"
        script.write_text(f"#!/bin/sh\ntouch {pwn.marker}\necho 'apiVersion: v1'\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        names.append(f"{APP_DIR}/pwn.sh")
    for name, content in files.items():
        (work.path / name).parent.mkdir(parents=True, exist_ok=True)
        (work.path / name).write_text(content)
    git(work.path, "add", "--", *names)
    return work.commit({}, "attack")


async def preview(work: WorkRepo, tmp_path: Path) -> Preview:
    return await compute_preview(
        GitCache(tmp_path / "cache"), work.url, base_branch="main", head_branch="attack"
    )


def only_failure(result: Preview) -> str:
    """The error of the one application the attack touched."""
    failures = [f.to_dict() for f in result.failures]
    planned = [r for r in result.results if r.plan is not None]
    assert len(failures) == 1 and not planned, result.to_dict()
    error = failures[0]["error"]
    assert isinstance(error, str)
    return error


# --- 1. Tools never take arguments from a repository -------------------------------------

HELM_CHART_KUSTOMIZATION = "helmCharts:\n  - name: x\n    releaseName: x\n"


async def test_kustomize_option_value_cannot_choose_the_helm_command(
    work: WorkRepo, outside: Outside, tmp_path: Path
) -> None:
    """`enable-helm: --helm-command=./pwn.sh` runs nothing; the error names the field."""
    push(
        work,
        {
            CONFIG: app_config(
                '  input:\n    kustomizeOptions:\n      enable-helm: "--helm-command=./pwn.sh"\n'
            ),
            f"{APP_DIR}/kustomization.yaml": HELM_CHART_KUSTOMIZATION,
        },
        pwn=outside,
    )
    error = only_failure(await preview(work, tmp_path))
    assert not outside.marker.exists(), "pwn.sh ran"
    assert "spec.input.kustomizeOptions.enable-helm" in error
    assert "must not start with" in error or "takes one of" in error


@pytest.mark.parametrize(
    ("options", "field", "problem"),
    [
        ({"enable-helm": "--helm-command=./pwn.sh"}, "enable-helm", "takes one of"),
        ({"enable_helm": "--enable-exec"}, "enable_helm", "takes one of"),
        ({"reorder": "--helm-command=./pwn.sh"}, "reorder", "takes one of"),
        ({"stack-trace": "--enable-alpha-plugins"}, "stack-trace", "takes one of"),
        ({"enable-managedby-label": "--mount=/"}, "enable-managedby-label", "takes one of"),
        ({"load-restrictor": "--helm-command=./pwn.sh"}, "load-restrictor", "takes one of"),
        ({"load_restrictor": "LoadRestrictionsNone"}, "load_restrictor", "is not allowed: it"),
        ({"helm-command": "./pwn.sh"}, "helm-command", "is not allowed"),
        ({"enable-exec": ""}, "enable-exec", "is not allowed"),
        ({"enable-alpha-plugins": ""}, "enable-alpha-plugins", "is not allowed"),
        ({"mount": "type=bind,src=/,dst=/host"}, "mount", "is not allowed"),
        ({"output": "/tmp/x"}, "output", "is not allowed"),
        ({"env": "A=1"}, "env", "is not allowed"),
        ({"network": ""}, "network", "is not allowed"),
    ],
)
def test_kustomize_options_are_allowed_pairs_only(
    tmp_path: Path, options: dict[str, str], field: str, problem: str
) -> None:
    """Only allow-listed (option, value) pairs load; the error names the field and says why."""
    lines = "".join(f'      {k}: "{v}"\n' for k, v in options.items())
    (tmp_path / "app.pipecd.yaml").write_text(
        app_config("  input:\n    kustomizeOptions:\n" + lines)
    )
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(tmp_path / "app.pipecd.yaml")
    assert caught.value.field_path == f"spec.input.kustomizeOptions.{field}"
    assert problem in caught.value.problem


def test_legitimate_kustomize_options_still_load(tmp_path: Path) -> None:
    """What PipeCD users set for real keeps working: enable_helm, RootOnly, reorder."""
    (tmp_path / "app.pipecd.yaml").write_text(
        app_config(
            "  input:\n    kustomizeOptions:\n      enable_helm: ''\n"
            "      load_restrictor: LoadRestrictionsRootOnly\n      reorder: legacy\n"
        )
    )
    config = load_application_config(tmp_path / "app.pipecd.yaml")
    assert config.spec.input.kustomize_options["reorder"] == "legacy"


async def test_kustomization_exec_functions_and_plugins_never_run(
    work: WorkRepo, outside: Outside, tmp_path: Path
) -> None:
    """An in-repo kustomization's exec KRM function or legacy exec plugin runs nothing."""
    push(
        work,
        {
            f"{APP_DIR}/kustomization.yaml": "resources:\n  - manifests.yaml\n"
            "generators:\n  - gen.yaml\ntransformers:\n  - plugin.yaml\n",
            f"{APP_DIR}/gen.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gen\n"
            "  annotations:\n    config.kubernetes.io/function: |\n      exec:\n"
            "        path: ./pwn.sh\n",
            f"{APP_DIR}/plugin.yaml": "apiVersion: someteam.example.com/v1\nkind: Pwn\n"
            "metadata: {name: pwn}\n",
        },
        pwn=outside,
    )
    result = await preview(work, tmp_path)
    assert not outside.marker.exists(), "pwn.sh ran"
    assert result.failures, result.to_dict()


async def test_kustomize_helm_cannot_take_its_plugins_from_the_repository(
    work: WorkRepo, outside: Outside, tmp_path: Path
) -> None:
    """`helmGlobals.configHome` (where helm finds plugins) is refused before kustomize runs."""
    push(
        work,
        {
            CONFIG: app_config("  input:\n    kustomizeOptions:\n      enable-helm: ''\n"),
            f"{APP_DIR}/kustomization.yaml": "helmGlobals:\n  configHome: ./helm\n"
            "helmCharts:\n  - name: x\n    repo: pwn://x\n",
            f"{APP_DIR}/helm/.data/plugins/pwn/plugin.yaml": "name: pwn\nversion: 0.1.0\n"
            "downloaders:\n  - command: ../../../../pwn.sh\n    protocols: [pwn]\n",
        },
        pwn=outside,
    )
    error = only_failure(await preview(work, tmp_path))
    assert not outside.marker.exists()
    assert "kustomization.yaml:1:1: helmGlobals.configHome: not allowed" in error


@pytest.mark.parametrize(
    ("input_yaml", "field"),
    [
        (
            "    helmChart: {path: chart}\n"
            "    helmOptions: {releaseName: '--post-renderer=./pwn.sh'}\n",
            "spec.input.helmOptions.releaseName",
        ),
        ("    helmChart: {path: chart}\n    helmOptions: {releaseName: My_App}\n",
         "spec.input.helmOptions.releaseName"),
        ("    helmChart: {repository: r, name: c, version: '--post-renderer=./pwn.sh'}\n",
         "spec.input.helmChart.version"),
        ("    helmChart: {repository: '--post-renderer=x', name: c}\n",
         "spec.input.helmChart.repository"),
        ("    helmChart: {path: '--post-renderer=./pwn.sh'}\n", "spec.input.helmChart.path"),
        ("    namespace: '--post-renderer=./pwn.sh'\n    helmChart: {path: chart}\n",
         "spec.input.namespace"),
        ("    helmChart: {path: chart}\n    helmOptions: {valueFiles: ['v.yaml,/etc/passwd']}\n",
         "spec.input.helmOptions.valueFiles[0]"),
        ("    helmChart: {path: chart}\n    helmOptions: {setFiles: {'a,b': v.yaml}}\n",
         "spec.input.helmOptions.setFiles.a,b"),
        ("    helmChart: {path: chart}\n    helmOptions: {setFiles: {a: 'v.yaml,b=/etc/passwd'}}\n",
         "spec.input.helmOptions.setFiles.a"),
        ("    helmChart: {path: chart}\n    helmOptions: {apiVersions: ['--post-renderer=x']}\n",
         "spec.input.helmOptions.apiVersions[0]"),
        ("    helmChart: {path: chart}\n    helmOptions: {kubeVersion: '--post-renderer=x'}\n",
         "spec.input.helmOptions.kubeVersion"),
    ],
)  # fmt: skip
def test_helm_options_cannot_become_helm_flags(tmp_path: Path, input_yaml: str, field: str) -> None:
    """Helm values that would read as a flag, split into more values, or bad names: refused."""
    (tmp_path / "app.pipecd.yaml").write_text(app_config("  input:\n" + input_yaml))
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(tmp_path / "app.pipecd.yaml")
    assert caught.value.field_path == field


@pytest.fixture
def fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `helm` on PATH that records its arguments and, like helm, prints the chart's templates."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helm = bin_dir / "helm"
    args = tmp_path / "helm-args.json"
    helm.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"pathlib.Path({str(args)!r}).write_text(json.dumps(sys.argv[1:]))\n"
        "chart = pathlib.Path(sys.argv[-1])\n"
        "for t in sorted((chart / 'templates').iterdir()):\n"
        "    print('---'); print(t.read_text())\n"
    )
    helm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return args


CHART = {
    "app/chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "app/chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
    "app/values.yaml": "replicas: 1\n",
}


def write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


def test_helm_gets_joined_flags_and_positionals_after_double_dash(
    tmp_path: Path, fake_helm: Path
) -> None:
    """`helm template --flag=value … -- release chart`: no value is an argument of its own."""
    repo = tmp_path / "repo"
    write(repo, CHART)
    (repo / "app" / "app.pipecd.yaml").write_text(
        app_config(
            "  input:\n    namespace: web\n    helmChart: {path: chart}\n"
            "    helmOptions:\n      releaseName: web\n      valueFiles: [values.yaml]\n"
            "      setFiles: {config: values.yaml}\n      kubeVersion: '1.30'\n"
        )
    )
    config = load_application_config(repo / "app" / "app.pipecd.yaml")
    manifests = render_manifests(repo / "app", config, repo_root=repo)
    assert [m.name for m in manifests] == ["web"]
    args = json.loads(fake_helm.read_text())
    dash = args.index("--")
    assert args[0] == "template" and args[dash + 1] == "web"
    assert args[dash + 2] == str((repo / "app" / "chart").resolve())
    switches = {"--include-crds", "--no-hooks"}  # PipeCD's fixed flags, no value
    assert all(a in switches or (a.startswith("--") and "=" in a) for a in args[1:dash]), args
    assert "--namespace=web" in args and "--kube-version=1.30" in args


def test_helm_chart_with_a_symlink_out_is_refused_before_helm_runs(
    tmp_path: Path, fake_helm: Path, outside: Outside
) -> None:
    """Helm follows symlinks in a chart: a template linking outside is refused, helm not run."""
    repo = tmp_path / "repo"
    write(repo, CHART)
    os.symlink(outside.manifest, repo / "app" / "chart" / "templates" / "leak.yaml")
    (repo / "app" / "app.pipecd.yaml").write_text(
        app_config("  input:\n    helmChart: {path: chart}\n")
    )
    config = load_application_config(repo / "app" / "app.pipecd.yaml")
    with pytest.raises(ConfigError) as caught:
        render_manifests(repo / "app", config, repo_root=repo)
    assert "chart/templates/leak.yaml points outside the repository" in str(caught.value)
    assert not fake_helm.exists()
    outside.assert_never_seen(str(caught.value))


def test_a_relative_path_entry_never_finds_a_tool_in_the_repository(
    tmp_path: Path, outside: Outside, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With "." on PATH, the `kubectl` a branch commits next to its kustomization never runs."""
    app = tmp_path / "repo" / "app"
    write(
        app,
        {
            "kustomization.yaml": "resources: [cm.yaml]\n",
            "cm.yaml": CHART["app/chart/templates/cm.yaml"],
        },
    )
    (app / "app.pipecd.yaml").write_text(app_config())
    for tool in ("kubectl", "kustomize"):
        (app / tool).write_text(f"#!/bin/sh\ntouch {outside.marker}\n")
        (app / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f".{os.pathsep}{os.environ['PATH']}")
    config = load_application_config(app / "app.pipecd.yaml")
    manifests = render_manifests(app, config, repo_root=tmp_path / "repo")
    assert not outside.marker.exists(), "the repository's kubectl ran"
    assert [m.name for m in manifests] == ["web"]


# --- git: names from configs and requests never become options -----------------------------


@pytest.mark.parametrize("branch", ["--upload-pack=touch /tmp/pwned", "-c", "a..b", "x@{1}"])
async def test_branch_names_that_git_could_misread_are_refused(
    work: WorkRepo, tmp_path: Path, branch: str
) -> None:
    """A head branch named like an option or a revision range is a clear error; git never runs."""
    with pytest.raises(ConfigError, match="head branch: not a valid branch name"):
        await compute_preview(
            GitCache(tmp_path / "cache"), work.url, base_branch="main", head_branch=branch
        )
    assert not (tmp_path / "cache").exists()


def test_control_config_branch_must_be_a_branch_name(tmp_path: Path) -> None:
    """slipway.yaml's repositories[].branch follows git's rules; the error names the field."""
    path = tmp_path / "slipway.yaml"
    path.write_text(
        "apiVersion: slipway.dev/v1\nkind: Slipway\nspec:\n  project: p\n  repositories:\n"
        "    - repoId: config\n      remote: https://example.com/c.git\n"
        "      branch: --upload-pack=touch /tmp/pwned\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_control_config(path)
    assert "branch" in str(caught.value) and "not a valid branch name" in str(caught.value)


# --- 2. Files stay inside the repository -------------------------------------------------


async def test_symlinked_manifest_out_of_the_repository_is_refused(
    work: WorkRepo, outside: Outside, tmp_path: Path
) -> None:
    """A manifest linking to a host file: a clear error naming it, the file's text nowhere."""
    push(work, {}, symlinks={f"{APP_DIR}/leak.yaml": outside.manifest})
    result = await preview(work, tmp_path)
    error = only_failure(result)
    assert "manifest leak.yaml points outside the repository" in error
    outside.assert_never_seen(json.dumps(result.to_dict()))


async def test_listed_manifest_linking_to_a_token_is_refused(
    work: WorkRepo, outside: Outside, tmp_path: Path
) -> None:
    """input.manifests naming a symlink to a token file: refused, the token never quoted."""
    push(
        work,
        {CONFIG: app_config("  input:\n    manifests: [token.yaml]\n")},
        symlinks={f"{APP_DIR}/token.yaml": outside.token},
    )
    result = await preview(work, tmp_path)
    assert "input.manifests: token.yaml points outside" in only_failure(result)
    outside.assert_never_seen(json.dumps(result.to_dict()))


@pytest.mark.parametrize(
    "shape", ["base outside", "symlinked base", "symlink in a base", "transformer outside"]
)
async def test_kustomize_cannot_reach_outside_the_repository(
    work: WorkRepo, outside: Outside, tmp_path: Path, shape: str
) -> None:
    """Kustomize bases, and every symlink under them, must stay inside the repository."""
    files = {f"{APP_DIR}/kustomization.yaml": "resources:\n  - manifests.yaml\n  - base\n"}
    links: dict[str, str | Path] = {}
    # Kustomize refuses an absolute base, but enough `..` reach the root from anywhere.
    climb = "../" * 30 + str(outside.base).lstrip("/")
    if shape == "base outside":
        files[f"{APP_DIR}/kustomization.yaml"] = f"resources:\n  - {climb}\n"
    elif shape == "transformer outside":
        files[f"{APP_DIR}/kustomization.yaml"] = (
            f"resources:\n  - manifests.yaml\ntransformers:\n  - {climb}\n"
        )
    elif shape == "symlinked base":
        links[f"{APP_DIR}/base"] = outside.base
    else:
        files["shared/base/kustomization.yaml"] = "resources:\n  - sub\n"
        files[f"{APP_DIR}/kustomization.yaml"] = "resources:\n  - ../../shared/base\n"
        links["shared/base/sub"] = outside.base
    push(work, files, symlinks=links)
    result = await preview(work, tmp_path)
    assert "points outside the repository" in only_failure(result)
    outside.assert_never_seen(json.dumps(result.to_dict()))


async def test_symlinked_application_config_is_refused(
    work: WorkRepo, outside: Outside, tmp_path: Path
) -> None:
    """An application config that is a symlink to a host file is never read."""
    push(work, {}, symlinks={"leak/app.pipecd.yaml": outside.token})
    result = await preview(work, tmp_path)
    assert "the application config leak/app.pipecd.yaml points outside" in only_failure(result)
    outside.assert_never_seen(json.dumps(result.to_dict()))


def test_symlinked_analysis_template_is_refused(tmp_path: Path, outside: Outside) -> None:
    """A `.pipe/` template linking to a host file is refused by name, its text never quoted."""
    repo = tmp_path / "repo"
    (repo / ".pipe").mkdir(parents=True)
    os.symlink(outside.token, repo / ".pipe" / "leak.yaml")
    with pytest.raises(ConfigError) as caught:
        load_analysis_templates(repo)
    assert ".pipe/leak.yaml points outside the repository" in str(caught.value)
    outside.assert_never_seen(str(caught.value))


@pytest.mark.usefixtures("outside")
async def test_symlinks_inside_the_repository_still_work(work: WorkRepo, tmp_path: Path) -> None:
    """A manifest and a kustomize base linked from elsewhere in the repository render."""
    manifests = (work.path / APP_DIR / "manifests.yaml").read_text().replace(":v1", ":v2")
    push(
        work,
        {"shared/web.yaml": manifests},
        symlinks={f"{APP_DIR}/manifests.yaml": "../../shared/web.yaml"},
    )
    result = await preview(work, tmp_path)
    assert not result.failures, result.to_dict()
    assert [r.name for r in result.results] == ["account-dev"]


async def test_errors_quote_only_a_short_excerpt_of_a_file(work: WorkRepo, tmp_path: Path) -> None:
    """A committed file holding a secret is quoted at most a few characters deep."""
    secret = f"SECRET-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    push(work, {f"{APP_DIR}/manifests.yaml": secret + "\n"})
    error = only_failure(await preview(work, tmp_path))
    assert "expected a Kubernetes object" in error
    assert secret not in error and secret[-20:] not in error


# --- the same attacks through the API, the CLI and the planner -----------------------------


@pytest.fixture
async def api(
    store: EventStore, api_pool: asyncpg.Pool, work: WorkRepo, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """The API serving plan previews of `work`, and a read-write key."""
    source = PlanPreviewSource(
        repositories={"config": (work.url, "main")}, cache=GitCache(tmp_path / "api-cache")
    )
    async with served_api(store, api_pool, plan_preview=source) as url:
        yield url, await create_api_key(store, "read-write", "ci")


async def post_preview(api: tuple[str, str]) -> tuple[int, Any, str]:
    url, key = api
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(key)) as http,
        http.post(
            f"{API_PREFIX}/plan-preview", json={"repository_id": "config", "head_branch": "attack"}
        ) as reply,
    ):
        text = await reply.text()
        return reply.status, json.loads(text), text


async def test_api_plan_preview_runs_nothing_and_leaks_nothing(
    api: tuple[str, str], work: WorkRepo, outside: Outside
) -> None:
    """POST /plan-preview with a read-write key: the injection and the symlink both refused."""
    push(
        work,
        {
            CONFIG: app_config(
                '  input:\n    kustomizeOptions:\n      enable-helm: "--helm-command=./pwn.sh"\n'
            ),
            f"{APP_DIR}/kustomization.yaml": HELM_CHART_KUSTOMIZATION,
        },
        symlinks={"account/prd/leak.yaml": outside.manifest},
        pwn=outside,
    )
    status, body, text = await post_preview(api)
    assert status == 200, body
    assert not outside.marker.exists(), "pwn.sh ran"
    errors = {f["config_path"]: f["error"] for f in body["failures"]}
    assert "spec.input.kustomizeOptions.enable-helm" in errors[CONFIG]
    assert "manifest leak.yaml points outside the repository" in errors["account/prd/.pipe.yaml"]
    outside.assert_never_seen(text)


def test_cli_plan_preview_leaks_nothing(work: WorkRepo, outside: Outside) -> None:
    """`slipway plan-preview --repo`: a failure naming the file, the canary in no output."""
    push(work, {}, symlinks={f"{APP_DIR}/leak.yaml": outside.token})
    done = plan_preview(
        "--repo", str(work.path), "--base-branch", "main", "--head-branch", "attack"
    )
    assert "leak.yaml points outside the repository" in done.stdout + done.stderr
    outside.assert_never_seen(done.stdout, done.stderr)


@pytest.fixture
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


async def test_planner_records_the_refusal_without_the_file(
    backends: Backends,
    tmp_path: Path,
    outside: Outside,
    captured_logs: list[dict[str, Any]],
) -> None:
    """A merged symlink to a token: DeploymentPlanFailed names it; no event or log has the text."""
    work = WorkRepo(tmp_path / "merged")
    work.commit(seed_files("account"), "initial")
    commit = push(work, {}, symlinks={"account/prd/leak.yaml": outside.token})
    await backends.ensure_event_stream()
    harness = Harness(backends, GitCache(tmp_path / "planner-cache"), work.url)
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", commit)
        failed = await wait_for_event(harness.store, "d1", DeploymentPlanFailed)
    assert isinstance(failed, DeploymentPlanFailed)
    assert "leak.yaml points outside the repository" in failed.reason
    async with backends.store.pool.acquire() as connection:
        rows = await connection.fetch("SELECT * FROM events")
    assert rows and any(APP in str(dict(r)) for r in rows)
    outside.assert_never_seen(*(str(dict(r)) for r in rows), repr(captured_logs))


# --- the path rule itself ----------------------------------------------------------------


def test_path_rule(tmp_path: Path, outside: Outside) -> None:
    """Inside (also through in-repo links and loops) passes; any way out is refused."""
    repo = tmp_path / "r"
    (repo / "a" / "b").mkdir(parents=True)
    (repo / "a" / "b" / "f.yaml").write_text("x: 1\n")
    os.symlink("../a", repo / "a" / "b" / "loop")
    os.symlink("b/f.yaml", repo / "a" / "link.yaml")
    assert inside_repository(repo / "a" / "link.yaml", repo, "x") == repo / "a" / "b" / "f.yaml"
    check_tree(repo, repo, "x")
    for escape in (repo / ".." / "host" / "token", repo / "a" / ".." / ".."):
        with pytest.raises(ConfigError, match="points outside the repository"):
            inside_repository(escape, repo, "x")
    os.symlink("self", repo / "a" / "self")
    with pytest.raises(ConfigError, match="a/self is a symlink loop"):
        check_tree(repo / "a", repo, "x")
    (repo / "a" / "self").unlink()
    os.symlink(outside.root, repo / "a" / "b" / "host")
    with pytest.raises(ConfigError, match="a/b/host points outside the repository"):
        check_tree(repo / "a", repo, "x")
    # A symlinked directory on the way out, below the root; plain and missing paths resolve
    # as `Path.resolve` resolves them.
    with pytest.raises(ConfigError, match="points outside the repository"):
        inside_repository(repo / "a" / "b" / "host" / "token", repo, "x")
    for plain in (repo / "a" / "b" / "f.yaml", repo / "a" / "missing" / "f.yaml"):
        assert inside_repository(plain, repo, "x") == plain.resolve()
