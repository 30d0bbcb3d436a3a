"""Rows written as one JSON document (`shared.projections.rows`): every character a text
field of an event can carry reaches its column unchanged, live and replayed."""

from __future__ import annotations

from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import DeploymentCompleted, DeploymentTriggered
from shared.projections import ProjectionRunner, replay
from shared.projections.deployments import DeploymentsProjection
from shared.projections.insights import InsightsProjection

# What JSON must escape or carry as is: quotes, backslashes, control characters, a
# separator JSON allows raw but JavaScript does not, characters beyond the BMP, and
# text that looks like JSON or SQL.
AWKWARD = (
    'fix "quoted" \\ back\\slash\n\tnew line, tab, \u2028 \u00e9 \u6f22 \U0001f680 '
    '{"a": [1]} \'); DROP TABLE x; --'
)


async def test_text_reaches_its_column_unchanged(
    store: EventStore, projector_store: EventStore
) -> None:
    await store.append(
        "deployment-weird",
        new_events(
            [
                DeploymentTriggered(
                    deployment_id="weird",
                    application_id="app-\u00e9",
                    trigger=vocabulary.Trigger("on_commit"),
                    commit_hash="c1",
                    commit_message=AWKWARD,
                    commander=AWKWARD[::-1],
                    repository_id='repo "1"',
                ),
                DeploymentCompleted(
                    deployment_id="weird",
                    application_id="app-\u00e9",
                    status=vocabulary.DeploymentStatus("FAILURE"),
                    reason=AWKWARD,
                    commit_hash="c1",
                ),
            ]
        ),
        expected_version=NO_STREAM,
    )
    # The projector's role builds them: live, then replayed into a new generation.
    projector = projector_store
    for projection in (DeploymentsProjection(), InsightsProjection()):
        await ProjectionRunner(projector, projection).run_until_caught_up()
    live = await projector.pool.fetchrow("SELECT * FROM deployments")
    for projection in (DeploymentsProjection(), InsightsProjection()):
        await replay(projector, projection)
    replayed = await projector.pool.fetchrow("SELECT * FROM deployments")

    assert live == replayed
    assert replayed["commit_message"] == AWKWARD
    assert replayed["commander"] == AWKWARD[::-1]
    assert replayed["reason"] == AWKWARD
    assert replayed["application_id"] == "app-\u00e9"
    insight = await projector.pool.fetchrow("SELECT * FROM insight_deployments")
    assert insight["repository_id"] == 'repo "1"'
    assert insight["application_id"] == "app-\u00e9"
