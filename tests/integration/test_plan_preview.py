"""`slipway plan-preview` as CI runs it: a subprocess against a real repository, with exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import plan_preview
from tests.support.git_helpers import WorkRepo
from tests.support.seed_repo import DEV_CONFIG, image_bump, seed_files, service_files


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    """A config repository in the seed's layout on `main`, with two services."""
    repo = WorkRepo(tmp_path / "config")
    repo.commit({**seed_files("account"), **seed_files("payment")}, "initial")
    return repo


def test_image_bump_branch_previews_prd_pipeline_and_dev_quick_sync(work: WorkRepo) -> None:
    """A branch bumping account's image previews prd's pipeline and dev's quick sync, no more."""
    work.checkout_new_branch("bump")
    work.commit(
        {**image_bump("account", "dev", "v2"), **image_bump("account", "prd", "v2")}, "account v2"
    )
    done = plan_preview("--repo", str(work.path), "--base-branch", "main", "--head-branch", "bump")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Here are plan-preview for 2 applications:" in out
    assert "1. application: account-dev (account/dev/.pipe.yaml)" in out
    assert "2. application: account-prd (account/prd/.pipe.yaml)" in out
    assert "payment" not in out
    dev, prd = out.split("2. application:")
    assert "sync strategy: QUICK_SYNC" in dev and "summary: image account: v1 → v2" in dev
    assert "sync strategy: PIPELINE" in prd and "summary: image account: v1 → v2" in prd
    assert "K8S_CANARY_ROLLOUT → ANALYSIS → K8S_PRIMARY_ROLLOUT → K8S_CANARY_CLEAN" in prd
    assert (
        "~ spec.template.spec.containers.0.image: ghcr.io/bucketeer-io/account:v1 → "
        "ghcr.io/bucketeer-io/account:v2" in prd
    )


def test_json_output_by_head_commit(work: WorkRepo) -> None:
    """`--head-commit --json`: structured results with strategy, summary, stages and the diff."""
    work.checkout_new_branch("scale")
    head = work.commit(
        {
            **service_files("payment", "prd", replicas=5),
            "payment/prd/extra.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: extra}\ndata: {A: '1'}\n",
        },
        "payment: scale",
    )
    work.checkout("main")
    done = plan_preview(
        "--repo", work.url, "--base-branch", "main", "--head-commit", head, "--json"
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["head"] == {"ref": head, "commit": head}
    assert data["failures"] == []
    [result] = data["results"]
    assert result["application"] == "payment-prd"
    assert result["strategy"] == "pipeline"  # a new ConfigMap is a config change
    assert result["rule"] == "config_changed"
    assert result["summary"] == "replicas payment: 2 → 5, +1 resource"
    assert result["diff"]["added"] == [
        {"api_version": "v1", "kind": "ConfigMap", "namespace": "", "name": "extra"}
    ]
    assert [s["name"] for s in result["stages"]][-1] == "ROLLBACK"


def test_no_change_to_any_application(work: WorkRepo) -> None:
    """A branch that touches no application says so, and exits 0."""
    work.checkout_new_branch("docs")
    work.commit({"README.md": "hello\n"}, "docs")
    done = plan_preview("--repo", str(work.path), "--base-branch", "main", "--head-branch", "docs")
    assert done.returncode == 0, done.stderr
    assert "No applications are changed" in done.stdout


def test_broken_config_is_reported_with_file_and_line_and_exits_1(work: WorkRepo) -> None:
    """An application that cannot be planned is listed with its reason; the exit code is 1."""
    work.checkout_new_branch("broken")
    work.commit({"account/dev/.pipe.yaml": "apiVersion: pipecd.dev/v1beta1\nkind: Nope\n"}, "x")
    done = plan_preview(
        "--repo", str(work.path), "--base-branch", "main", "--head-branch", "broken"
    )
    assert done.returncode == 1
    assert "NOTE: 1 application could not be planned:" in done.stdout
    assert "reason: account/dev/.pipe.yaml:2:" in done.stdout


def test_on_commit_ignores_and_paths_decide_which_apps_are_previewed(work: WorkRepo) -> None:
    """The gitwatcher's rule: an `ignores` match leaves an app out; `paths` globs bring one in."""
    trigger = (
        "  trigger:\n    onCommit:\n      paths: ['shared/**/*.yaml']\n      ignores: ['**/*.md']\n"
    )
    work.commit(
        {
            "account/dev/.pipe.yaml": DEV_CONFIG.format(name="account-dev") + trigger,
            "payment/dev/.pipe.yaml": DEV_CONFIG.format(name="payment-dev"),
        },
        "dev apps: onCommit paths and ignores",
    )
    work.checkout_new_branch("docs")
    work.commit({"account/dev/NOTES.md": "notes\n", "payment/dev/NOTES.md": "notes\n"}, "docs only")
    done = plan_preview("--repo", str(work.path), "--base-branch", "main", "--head-branch", "docs")
    assert done.returncode == 0, done.stderr
    assert "Here are plan-preview for 1 application:" in done.stdout
    assert "application: payment-dev (payment/dev/.pipe.yaml)" in done.stdout
    assert "account" not in done.stdout  # its NOTES.md matches `**/*.md`

    work.checkout("main")
    work.checkout_new_branch("shared")
    work.commit({"shared/base/values.yaml": "a: 1\n"}, "shared values")
    done = plan_preview(
        "--repo", str(work.path), "--base-branch", "main", "--head-branch", "shared"
    )
    assert done.returncode == 0, done.stderr
    assert "Here are plan-preview for 1 application:" in done.stdout
    assert "application: account-dev (account/dev/.pipe.yaml)" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--base-branch", "nope", "--head-branch", "main"], 2, "base branch 'nope' does not"),
        (["--base-branch", "main", "--head-commit", "0" * 40], 2, "head commit"),
    ],
)
def test_unknown_branch_or_commit_is_a_usage_error(
    work: WorkRepo, args: list[str], code: int, message: str
) -> None:
    """A base branch or head commit that does not exist exits 2, naming it."""
    done = plan_preview("--repo", str(work.path), *args)
    assert done.returncode == code
    assert message in done.stderr


def test_unreachable_repository_exits_3() -> None:
    """A repository that cannot be fetched exits 3."""
    done = plan_preview(
        "--repo", "http://127.0.0.1:9/nothing.git", "--base-branch", "main", "--head-branch", "x"
    )
    assert done.returncode == 3, done.stderr
    assert "cannot fetch http://127.0.0.1:9/nothing.git" in done.stderr


def test_head_is_required() -> None:
    """Neither --head-branch nor --head-commit is an argparse usage error (exit 2)."""
    done = plan_preview("--repo", ".", "--base-branch", "main")
    assert done.returncode == 2


def test_base_branch_is_required_with_a_local_repo(work: WorkRepo) -> None:
    """`--repo` without `--base-branch` is a usage error (exit 2) naming the option."""
    done = plan_preview("--repo", str(work.path), "--head-branch", "main")
    assert done.returncode == 2
    assert "--base-branch is required with --repo" in done.stderr
