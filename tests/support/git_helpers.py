"""Real git repositories for tests: make one, commit files to it, point a remote at it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in `cwd` with no user or system config; its stdout, stripped."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=clean | _ENV | dict(env or {}),
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


class WorkRepo:
    """A non-bare repository on `branch` that tests commit to; its `url` is a file:// remote."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "--quiet", f"--initial-branch={branch}")

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        message: str = "change",
        *,
        author: str = "Alice Example",
        email: str = "alice@example.com",
        date: str = "2026-01-02T03:04:05+00:00",
    ) -> str:
        """Write (or, for None, delete) `files`, commit them all; the new commit's hash."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                git(self.path, "rm", "--quiet", "-r", "--", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            git(self.path, "add", "--", name)
        identity = {
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_DATE": date,
        }
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message, env=identity)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def checkout_new_branch(self, name: str) -> None:
        git(self.path, "checkout", "--quiet", "-b", name)

    def checkout(self, name: str) -> None:
        git(self.path, "checkout", "--quiet", name)

    def merge(self, branch: str, message: str) -> str:
        """A merge commit (never fast-forward) of `branch` into the current branch."""
        identity = {
            "GIT_AUTHOR_NAME": "Merger",
            "GIT_AUTHOR_EMAIL": "merger@example.com",
            "GIT_COMMITTER_NAME": "Merger",
            "GIT_COMMITTER_EMAIL": "merger@example.com",
        }
        git(self.path, "merge", "--quiet", "--no-ff", "-m", message, branch, env=identity)
        return self.head()


PIPE_APP = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: {env}
{extra}"""


def app_config(name: str, env: str = "dev", extra: str = "") -> str:
    """A minimal PipeCD KubernetesApp config; `extra` is more YAML indented under `spec:`."""
    return PIPE_APP.format(name=name, env=env, extra=extra)
