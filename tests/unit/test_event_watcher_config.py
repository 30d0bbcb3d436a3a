"""The event watcher's settings: watchers read from configs, repositories from slipway.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gitwatcher.configs import event_repositories, read_app_watchers, read_pipe_watchers
from services.gitwatcher.eventplan import Replacement, matching
from services.gitwatcher.pullrequests import github_repository_of
from shared.config import load_control_config
from shared.errors import ConfigError
from shared.git import GitCache

CONTROL = """\
apiVersion: slipway.dev/v1
kind: Slipway
spec:
  project: demo
  repositories:
    - repoId: config
      remote: git@github.com:acme/config.git
  eventWatcher:
    gitRepos:
      - repoId: config
        commitMessage: "bump {{ .Value }}"
        excludes: [legacy.yaml]
        pullRequest: {apiURL: "https://ghe.example/api/v3", tokenFile: gh-token}
"""

APP = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: web
  eventWatcher:
    - matcher: {name: image-update, labels: {env: dev}}
      handler:
        type: GIT_UPDATE
        config:
          makePullRequest: true
          replacements:
            - {file: deployment.yaml, yamlField: "$.spec.image"}
            - {file: values.txt, regex: "web: (v.*)"}
"""

PIPE = """\
apiVersion: pipecd.dev/v1beta1
kind: EventWatcher
spec:
  events:
    - name: chart
      replacements: [{file: charts.json, jsonField: "$.web"}]
"""


def test_repositories_take_the_control_config_settings(tmp_path: Path) -> None:
    (tmp_path / "gh-token").write_text("s3cret\n")
    (tmp_path / "slipway.yaml").write_text(CONTROL)
    control = load_control_config(tmp_path / "slipway.yaml")
    git = GitCache(tmp_path / "cache").repository("git@github.com:acme/config.git")
    [repository] = event_repositories(control, {"config": (git, "main")})
    assert repository.commit_message == "bump {{ .Value }}"
    assert repository.excludes == ("legacy.yaml",)
    assert repository.pull_requests is not None
    assert repository.pull_requests.repository == "acme/config"
    assert repository.pull_requests.api_url == "https://ghe.example/api/v3"
    assert repository.pull_requests.token == "s3cret"


def test_a_missing_token_file_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "slipway.yaml").write_text(CONTROL)
    control = load_control_config(tmp_path / "slipway.yaml")
    git = GitCache(tmp_path / "cache").repository("git@github.com:acme/config.git")
    with pytest.raises(ConfigError, match="pullRequest: tokenFile"):
        event_repositories(control, {"config": (git, "main")})


def test_watchers_from_an_application_config_and_a_pipe_file() -> None:
    [watcher] = read_app_watchers("app-1", "apps/web", "apps/web/app.pipecd.yaml", APP.encode())
    assert (watcher.origin, watcher.base_dir, watcher.make_pull_request) == (
        "app:app-1",
        "apps/web",
        True,
    )
    assert watcher.replacements == (
        Replacement("deployment.yaml", "yamlField", "$.spec.image"),
        Replacement("values.txt", "regex", "web: (v.*)"),
    )
    assert matching([watcher], "image-update", [("env", "dev")]) == [watcher]
    assert matching([watcher], "image-update", [("env", "dev"), ("app", "web")]) == []
    assert matching([watcher], "image-update", []) == []
    [pipe] = read_pipe_watchers(".pipe/events.yaml", PIPE.encode(), "msg")
    assert (pipe.origin, pipe.base_dir, pipe.commit_message) == (".pipe/events.yaml", "", "msg")
    assert (
        read_pipe_watchers(
            ".pipe/other.yaml",
            b"apiVersion: pipecd.dev/v1beta1\nkind: AnalysisTemplate\nspec: {}\n",
            "",
        )
        == []
    )


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@github.com:acme/config.git", "acme/config"),
        ("https://github.com/acme/config", "acme/config"),
        ("https://token@github.com/acme/config.git", "acme/config"),
        ("ssh://git@github.com/acme/config.git", "acme/config"),
        ("file:///tmp/repo", ""),
    ],
)
def test_github_repository_of_a_remote(remote: str, expected: str) -> None:
    assert github_repository_of(remote) == expected
