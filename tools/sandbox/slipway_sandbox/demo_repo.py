"""The demo's config repository: a local git repository in the seed's layout (DESIGN §1).

One service (`account`) in two environments: `account/dev/` quick-syncs and
`account/prd/` runs canary → analysis on `grpc_error_rate` → primary → clean,
with the shared `.pipe/analysis-template.yaml`. With the event-watcher step a
third, `account/stg/`, quick-syncs too but only when dev's deployment chain
(`postSync.chain`) deploys it, never on a commit. The story changes it the way
the seed's CI and people do: a commit that bumps an image tag (a merged pull
request), and `git revert` of such a commit (the seed's manual rollback).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shared.errors import SlipwayError
from slipway_sandbox.seed_layout import (
    DEMO_ANALYSIS_TEMPLATE,
    DEMO_CHAINED,
    DEMO_DEV_CONFIG,
    DEMO_EVENT_WATCHER,
    DEMO_PRD_CONFIG,
    DEMO_PRD_CONFIG_WITHOUT_ANALYSIS,
    MANIFESTS,
)

REGISTRY: Final = "registry.example/bucketeer"
SERVICE: Final = "account"
ENVIRONMENTS: Final = ("dev", "prd")
CHAINED_ENV: Final = "stg"
"""The environment dev's chain deploys in `slipway demo --event-watcher`."""
BRANCH: Final = "main"

# git with no user or system configuration: the demo behaves the same on every machine.
_GIT_ENV: Final = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "Slipway Demo CI",
    "GIT_AUTHOR_EMAIL": "ci@demo.invalid",
    "GIT_COMMITTER_NAME": "Slipway Demo CI",
    "GIT_COMMITTER_EMAIL": "ci@demo.invalid",
}


@dataclass(frozen=True)
class DemoTiming:
    """The waits the demo configures, in seconds; the story's duration is mostly these."""

    analysis_s: int = 20
    analysis_interval_s: int = 5
    rate_window_s: int = 10
    canary: str = "50%"
    replicas: int = 2


def app_name(env: str, service: str = SERVICE) -> str:
    """The demo application's name in `env`, `<service>-<env>`."""
    return f"{service}-{env}"


def app_path(env: str, service: str = SERVICE) -> str:
    """The application's directory in the repository, `<service>/<env>`."""
    return f"{service}/{env}"


def image(tag: str, service: str = SERVICE) -> str:
    """The image the manifests name for `tag` (what kubesim's image rules match)."""
    return f"{REGISTRY}/{service}:{tag}"


def manifests(tag: str, timing: DemoTiming, service: str = SERVICE) -> str:
    """The application's manifests running image `tag`."""
    return MANIFESTS.format(service=service, tag=tag, replicas=timing.replicas, registry=REGISTRY)


def initial_files(
    timing: DemoTiming,
    *,
    tag: str,
    with_analysis: bool = True,
    service: str = SERVICE,
    event_watcher: bool = False,
) -> dict[str, str]:
    """The whole repository: the shared analysis template and the service in dev and prd;
    with `event_watcher`, dev's image event watcher and its chain to stg, and stg."""
    prd_template = DEMO_PRD_CONFIG if with_analysis else DEMO_PRD_CONFIG_WITHOUT_ANALYSIS
    files = {
        ".pipe/analysis-template.yaml": DEMO_ANALYSIS_TEMPLATE.format(
            interval=f"{timing.analysis_interval_s}s", window=f"{timing.rate_window_s}s"
        ),
        f"{app_path('dev', service)}/.pipe.yaml": DEMO_DEV_CONFIG.format(
            name=app_name("dev", service), env="dev"
        )
        + (DEMO_EVENT_WATCHER.format(service=service, next=CHAINED_ENV) if event_watcher else ""),
        f"{app_path('prd', service)}/.pipe.yaml": prd_template.format(
            name=app_name("prd", service),
            env="prd",
            service=service,
            canary=timing.canary,
            duration=f"{timing.analysis_s}s",
        ),
    }
    environments: tuple[str, ...] = ENVIRONMENTS
    if event_watcher:
        environments += (CHAINED_ENV,)
        files[f"{app_path(CHAINED_ENV, service)}/.pipe.yaml"] = (
            DEMO_DEV_CONFIG.format(name=app_name(CHAINED_ENV, service), env=CHAINED_ENV)
            + DEMO_CHAINED
        )
    for env in environments:
        files[f"{app_path(env, service)}/manifests.yaml"] = manifests(tag, timing, service)
    return files


def image_bump(env: str, tag: str, timing: DemoTiming, service: str = SERVICE) -> dict[str, str]:
    """What CI's pull request changes: the image tag of one environment."""
    return {f"{app_path(env, service)}/manifests.yaml": manifests(tag, timing, service)}


class DemoRepoError(SlipwayError, RuntimeError):
    """A git command failed; the message has its stderr."""


class DemoRepo:
    """A non-bare repository on `main`, served to Slipway as a `file://` remote."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def url(self) -> str:
        """The repository's `file://` URL, for the control config."""
        return self.path.resolve().as_uri()

    def create(self, files: Mapping[str, str], message: str) -> str:
        """A fresh repository whose first commit holds `files`; that commit's hash."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", f"--initial-branch={BRANCH}")
        # The event watcher pushes its write-backs here: a checked-out branch takes a push
        # when the tree is clean, which the demo's own commits always leave it.
        self._git("config", "receive.denyCurrentBranch", "updateInstead")
        return self.commit(files, message)

    def commit(self, files: Mapping[str, str], message: str) -> str:
        """Write `files` and commit them on the current branch; the new commit's hash."""
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            self._git("add", "--", name)
        self._git("commit", "--quiet", "-m", message)
        return self.head()

    def revert(self, commit: str) -> str:
        """`git revert` of `commit` (the seed's manual rollback); the new commit's hash."""
        self._git("revert", "--no-edit", commit)
        return self.head()

    def head(self) -> str:
        """The current commit's hash."""
        return self._git("rev-parse", "HEAD")

    def subject(self, commit: str) -> str:
        """A commit's subject line."""
        return self._git("log", "-1", "--format=%s", commit)

    def _git(self, *args: str) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=clean | _GIT_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise DemoRepoError(f"git {' '.join(args)} in {self.path}: {done.stderr.strip()}")
        return done.stdout.strip()
