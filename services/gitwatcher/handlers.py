"""Pure reactions of the gitwatcher: a sync request becomes an on-command trigger."""

from __future__ import annotations

from shared.events.catalog import DeploymentTriggered, SyncRequested
from shared.events.ids import on_command_deployment_id
from shared.events.vocabulary import Strategy, Trigger
from shared.redaction import COMMIT_MESSAGE_CHARS, clip

__all__ = ["on_command_trigger"]


def on_command_trigger(
    request: SyncRequested,
    *,
    repository_id: str,
    branch: str,
    commit_hash: str,
    commit_author: str,
    commit_message: str,
    committed_at: str = "",
) -> DeploymentTriggered:
    """Deploy the application at the branch head, with the strategy the request forces.

    A request is decoded as a `Strategy` (an unknown word never reaches here);
    one built in code with another word is read as "auto" (let the planner
    decide), as a deployment with the planner's choice is closer to what was
    asked than none.
    """
    return DeploymentTriggered(
        deployment_id=on_command_deployment_id(request.application_id, request.request_id),
        application_id=request.application_id,
        trigger=Trigger.ON_COMMAND,
        commit_hash=commit_hash,
        commit_author=commit_author,
        commit_message=clip(commit_message, COMMIT_MESSAGE_CHARS),
        strategy=_strategy(request.strategy),
        repository_id=repository_id,
        commit_branch=branch,
        commander=request.commander,
        committed_at=committed_at,
    )


def _strategy(word: str) -> Strategy:
    try:
        return Strategy(word)
    except ValueError:
        return Strategy.AUTO
