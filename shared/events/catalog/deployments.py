"""Deployments from trigger to plan and completion: the gitwatcher's and planner's
events (stream `deployment-<deployment_id>`).
"""

from __future__ import annotations

import msgspec

from shared.events.base import Event
from shared.events.vocabulary import (
    DeploymentStatus,
    StageName,
    Strategy,
    Trigger,
)


class DeploymentTriggered(Event, tag="deployment_triggered", frozen=True):
    """A deployment of an application at a commit was asked for (stream `deployment-<id>`)."""

    deployment_id: str
    application_id: str
    trigger: Trigger
    commit_hash: str
    commit_author: str = ""
    commit_message: str = ""
    strategy: Strategy = Strategy.AUTO  # auto, or a strategy the command forced
    repository_id: str = ""
    commit_branch: str = ""
    commander: str = ""  # who asked, for on_command
    # When the commit was made, ISO 8601 as git reports it (`CommitObserved.committed_at`);
    # "" when the trigger did not know (drift, events written before this field).
    committed_at: str = ""
    chain_id: str = ""  # on_chain: the chain (stream `chain-<id>`) that triggered it


class PlannedStage(msgspec.Struct, frozen=True, kw_only=True):
    """One stage of a planned pipeline, as the executor will run it."""

    id: str  # stable within the deployment, e.g. "stage-0"
    name: StageName
    index: int
    desc: str = ""
    options_json: str = "{}"  # the stage's `with:` block, as JSON
    predefined: bool = False
    visible: bool = True  # False for the hidden ROLLBACK stage
    requires: tuple[str, ...] = ()
    timeout_s: float = 0.0


class DeploymentQueued(Event, tag="deployment_queued", frozen=True):
    """Another deployment of the application is active; this one waits its turn (FIFO)."""

    deployment_id: str
    application_id: str
    behind_deployment_id: str


class DeploymentPlanned(Event, tag="deployment_planned", frozen=True):
    """The planner's plan for a deployment: its strategy, why, and its stages."""

    deployment_id: str
    application_id: str
    commit_hash: str
    strategy: Strategy  # quick_sync | pipeline: the planner's choice
    summary: str  # what a person reads first: "image helloworld: v1 → v2"
    reason: str  # which planner rule decided
    stages: tuple[PlannedStage, ...]
    running_commit_hash: str = ""
    config_filename: str = ""
    path: str = ""
    repository_id: str = ""
    skipped: dict[str, str] = msgspec.field(default_factory=dict)
    """Stage id → why its `skipOn` skips it (PipeCD's rule, decided when planning): the
    executor records those stages SKIPPED instead of running them."""
    version: str = ""
    """What it deploys, named by its Deployments' image tags (PipeCD's `determineVersion`:
    "v2", "v2 (web), 1.4 (sidecar)", or "unknown")."""
    diff: str = ""
    """The manifest diff the strategy was chosen from, as plan previews print it (running
    commit → this one; Secret values masked and the rest redacted by the diff, at most
    `DIFF_CHARS`); "" when there was nothing to compare (a first deployment, or an
    event recorded before plans carried it). The console's deployment page shows it."""
    config_text: str = ""
    """The application's config file at this commit, redacted, at most `CONFIG_CHARS`
    ("" before plans carried it): the console shows the one of the running commit."""


class DeploymentPlanFailed(Event, tag="deployment_plan_failed", frozen=True):
    """No plan could be made (bad config, render failure): the deployment ends here."""

    deployment_id: str
    application_id: str
    reason: str  # something a person can act on


class DeploymentCompleted(Event, tag="deployment_completed", frozen=True):
    """The deployment reached a final status (the executor's last word on it)."""

    deployment_id: str
    application_id: str
    status: DeploymentStatus  # SUCCESS | FAILURE | CANCELLED
    commit_hash: str = ""
    reason: str = ""
