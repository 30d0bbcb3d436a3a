"""Ids derived from what caused them: every rule written once, part of the wire contract.

Two services that compute the same id agree without talking, and a handler
that runs twice appends once (`shared.ids.deterministic_event_id` is the
primitive; these are the named rules). Changing a rule changes which
deployment, analysis or notification an old cause names: never edit one in
place, add a new rule beside it.
"""

from __future__ import annotations

import hashlib
import uuid

from shared.ids import deterministic_event_id

__all__ = [
    "analysis_id_of",
    "analysis_request_event_id",
    "chain_id_of",
    "drift_deployment_id",
    "notification_id_of",
    "on_chain_deployment_id",
    "on_command_deployment_id",
    "on_commit_deployment_id",
    "trigger_event_id",
]


def on_commit_deployment_id(application_id: str, commit_hash: str) -> str:
    """The one deployment an application gets for a commit: the same in every replica."""
    return deterministic_event_id("deployment", "on_commit", application_id, commit_hash).hex


def on_command_deployment_id(application_id: str, request_id: str) -> str:
    """The deployment a sync request opens: one per request, however often it is delivered.

    The API answers it to the client that asked (so it can wait for that very
    deployment) before the gitwatcher, which opens it, has even seen the request.
    """
    return deterministic_event_id("deployment", "on_command", application_id, request_id).hex


def drift_deployment_id(application_id: str, commit_hash: str) -> str:
    """The deployment drift's auto-sync opens: the same app and commit always name the same
    one, so retries and replicas dedupe."""
    digest = hashlib.sha256(f"{application_id}\0{commit_hash}\0drift".encode()).hexdigest()
    return f"drift{digest[:21]}"


def chain_id_of(origin_deployment_id: str) -> str:
    """The chain a successful deployment starts: one per deployment, however often its
    completion is delivered."""
    return deterministic_event_id("chain", origin_deployment_id).hex


def on_chain_deployment_id(chain_id: str, application_id: str) -> str:
    """The deployment a chain opens for one of its applications (once per chain and app)."""
    return deterministic_event_id("deployment", "on_chain", chain_id, application_id).hex


def trigger_event_id(deployment_id: str) -> uuid.UUID:
    """The id of the `DeploymentTriggered` that opens a deployment's stream."""
    return deterministic_event_id("deployment_triggered", deployment_id)


def analysis_id_of(deployment_id: str, stage_id: str) -> str:
    """The analysis of a deployment's ANALYSIS stage: 32 lowercase hex digits, the same on
    every run of the stage (so a restarted executor waits on the analysis it requested,
    and `rejudge` finds it)."""
    return deterministic_event_id("analysis", deployment_id, stage_id).hex


def analysis_request_event_id(analysis_id: str) -> uuid.UUID:
    """The id of the `AnalysisRequested` that opens an analysis' stream: asked once."""
    return deterministic_event_id("analysis_requested", analysis_id)


def notification_id_of(source_event_id: str, receiver: str) -> str:
    """The notification an event makes for a receiver: scheduled once per (event, receiver)."""
    return deterministic_event_id("notify", source_event_id, receiver).hex
