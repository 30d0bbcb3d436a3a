"""The notifier end to end over real NATS + PostgreSQL, with the relay running and real local
HTTP receivers (Slack-like, HMAC-verifying webhook, one that fails for a while)."""

from __future__ import annotations

from pathlib import Path

from services.notifier.notify.retry import RetryPolicy
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import RecordedEvent
from shared.events.catalog import (
    ApplicationSyncStateChanged,
    NotificationAttemptFailed,
    NotificationDelivered,
    NotificationFailed,
    NotificationScheduled,
)
from shared.testing import wait_until
from tests.support import Backends
from tests.support.notifier import (
    failing_deployment,
    notification_events,
    notifier_running,
    receivers,
    recorded,
    register,
    settle,
    write_config,
)

WAIT_S = 30.0
EVENT = "Slipway-Event"


async def test_deployment_and_drift_reach_slack_and_signed_webhook(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A failing deployment of a prd app and its drift reach the routes' receivers once each:
    Block Kit with app, labels, commit, stage, reason, link and per-event mentions to Slack;
    signed JSON to the webhook; a dev app and unrouted types go nowhere; all recorded."""
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[
                {
                    "name": "prd-deploys",
                    "receiver": "slack",
                    "groups": ["DEPLOYMENT"],
                    "labels": {"env": "prd"},
                    "ignoreEvents": ["DEPLOYMENT_PLANNED"],
                },
                {
                    "name": "failures",
                    "receiver": "hook",
                    "events": [
                        "DEPLOYMENT_FAILED",
                        "DEPLOYMENT_ROLLING_BACK",
                        "APPLICATION_OUT_OF_SYNC",
                    ],
                    "ignoreApps": ["api"],
                },
            ],
            slack_mentions=[
                {"event": "DEPLOYMENT_FAILED", "slackUsers": ["U1"], "slackGroups": ["S1"]}
            ],
        )
        await register(store, "web1", "web", "prd")
        await register(store, "api1", "api", "dev")
        async with notifier_running(control, backends):
            for deployment_id, app_id in (("d1", "web1"), ("d2", "api1")):
                for event in failing_deployment(deployment_id, app_id):
                    await store.append(
                        f"deployment-{deployment_id}", new_events([event]), expected_version=ANY
                    )
            await store.append(
                "drift-web1",
                new_events(
                    [
                        ApplicationSyncStateChanged(
                            application_id="web1",
                            state=vocabulary.SyncState("OUT_OF_SYNC"),
                            summary="1 resource differs",
                        )
                    ]
                ),
                expected_version=ANY,
            )
            await wait_until(
                lambda: len(server.at("/slack")) >= 3 and len(server.at("/hook")) >= 3,
                within_s=WAIT_S,
                what=lambda: (
                    f"received {[(r.path, r.headers.get(EVENT)) for r in server.received]}"
                ),
            )
            await wait_until(
                recorded(store, "notification_delivered", 6),
                within_s=WAIT_S,
                what="6 NotificationDelivered recorded",
            )
            await settle()

        slack_types = [r.headers["Slipway-Event"] for r in server.at("/slack")]
        assert slack_types == [
            "DEPLOYMENT_TRIGGERED",
            "DEPLOYMENT_ROLLING_BACK",
            "DEPLOYMENT_FAILED",
        ]
        hook_types = sorted(r.headers["Slipway-Event"] for r in server.at("/hook"))
        assert hook_types == [
            "APPLICATION_OUT_OF_SYNC",
            "DEPLOYMENT_FAILED",
            "DEPLOYMENT_ROLLING_BACK",
        ]
        assert server.refused == []

        failed = server.at("/slack")[2].body
        text = "\n".join(f["text"] for b in failed["blocks"] for f in b.get("fields", []))
        assert failed["blocks"][0]["text"]["text"] == 'Deployment for "web" failed'
        for expected in (
            "web",
            "env: prd",
            "`feedface`",
            "Bump web to v2",
            "ROLLBACK",
            "canary pods crash",
            "https://slipway.example/deployments/d1",
        ):
            assert expected in text
        assert failed["text"].endswith("<@U0> <@U1> <!subteam^S1>")
        assert "<@U1>" not in server.at("/slack")[0].body["text"]

        hook = next(r.body for r in server.at("/hook") if r.body["type"] == "DEPLOYMENT_FAILED")
        assert hook["id"] == server.at("/hook")[0].delivery_id or hook["id"]
        assert (hook["deployment"]["commit_hash"], hook["stage"], hook["reason"]) == (
            "feedface00112233",
            "ROLLBACK",
            "canary pods crash",
        )
        assert hook["application"]["labels"] == [["env", "prd"]]

        counts = await notification_events(store.pool)
        assert counts == {"notification_scheduled": 6, "notification_delivered": 6}
        ids = [r.delivery_id for r in server.received]
        assert len(set(ids)) == len(ids) == 6


async def test_failing_receiver_is_retried_with_backoff_until_it_recovers(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A receiver down for 3 requests gets attempt 4 with the same delivery id and body;
    each failure is recorded with a growing back-off, then one NotificationDelivered."""
    async with receivers(fail_first=3) as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "flaky", "events": ["DEPLOYMENT_FAILED"]}],
        )
        await register(store, "web1", "web", "prd")
        async with notifier_running(
            control,
            backends,
            policy=RetryPolicy(base_s=0.1, factor=2, cap_s=1.0, jitter=0.0),
        ):
            await store.append(
                "deployment-d1",
                new_events(failing_deployment("d1", "web1")),
                expected_version=ANY,
            )
            await wait_until(
                lambda: server.at("/flaky"), within_s=WAIT_S, what="the flaky receiver recovered"
            )
            await wait_until(
                recorded(store, "notification_delivered", 1),
                within_s=WAIT_S,
                what="delivery recorded",
            )
            await settle()

        assert [code for _, code in server.refused] == [503, 503, 503]
        (delivered,) = server.at("/flaky")
        history = await store.read_stream(f"notification-{delivered.delivery_id}")
        kinds = [type(e.event) for e in history]
        assert kinds == [NotificationScheduled] + [NotificationAttemptFailed] * 3 + [
            NotificationDelivered
        ]
        failures = [e.event for e in history if isinstance(e.event, NotificationAttemptFailed)]
        assert [f.retry_in_s for f in failures] == [0.1, 0.2, 0.4]
        assert all(f.status_code == 503 and "down for now" in f.error for f in failures)
        final = history[-1].event
        assert isinstance(final, NotificationDelivered) and final.attempt == 4
        scheduled = history[0].event
        assert isinstance(scheduled, NotificationScheduled)
        assert delivered.body == __import__("json").loads(scheduled.body)


async def test_gives_up_after_max_attempts_or_at_once_on_a_permanent_refusal(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A receiver that keeps answering 500 is tried max_attempts times, then NotificationFailed
    with the last error; a 401 (bad signature) is given up after the first attempt."""
    async with receivers(fail_first=1000, status_when_failing=500) as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "flaky", "events": ["DEPLOYMENT_FAILED"]}],
        )
        # The webhook receiver verifies with another secret than the one we sign with.
        bad = control.spec.notifications.receivers[1].webhook
        assert bad is not None
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(
            control.path.read_text()
            .replace("test-hmac-secret", "not-the-secret")
            .replace("receiver: flaky", "receiver: hook")
        )
        from shared.config.control_loader import load_control_config

        control_wrong = load_control_config(wrong)
        await register(store, "web1", "web", "prd")
        for n, config in enumerate((control, control_wrong), start=1):
            async with notifier_running(
                config,
                backends,
                policy=RetryPolicy(max_attempts=3, base_s=0.05, jitter=0.0),
            ):
                await store.append(
                    f"deployment-d{n}",
                    new_events(failing_deployment(f"d{n}", "web1")),
                    expected_version=ANY,
                )
                await wait_until(
                    recorded(store, "notification_failed", n),
                    within_s=WAIT_S,
                    what=f"notification {n} given up",
                )
                await settle()

    assert [code for path, code in server.refused] == [500, 500, 500, 401]
    failed = {
        e.event.notification_id: e.event
        for e in await _all(store)
        if isinstance(e.event, NotificationFailed)
    }
    attempts = sorted((f.attempts, f.status_code) for f in failed.values())
    assert attempts == [(1, 401), (3, 500)]
    assert all(f.error.startswith(f"HTTP {f.status_code}") for f in failed.values())
    assert (await notification_events(store.pool))["notification_delivered"] == 0


async def _all(store: EventStore) -> list[RecordedEvent]:
    return await store.read_all(limit=10_000)


async def test_two_replicas_deliver_each_notification_once(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """Two notifier replicas sharing the consumer and the outbox send each of 60 notifications
    exactly once between them."""
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]}],
        )
        await register(store, "web1", "web", "prd")
        async with notifier_running(
            control,
            backends,
            holders=("n1", "n2"),
            concurrency=4,
        ) as replicas:
            for i in range(60):
                await store.append(
                    f"deployment-d{i}",
                    new_events(failing_deployment(f"d{i}", "web1")[:1]),
                    expected_version=ANY,
                )
            await wait_until(
                lambda: len(server.received) >= 60,
                within_s=WAIT_S,
                what=lambda: f"{len(server.received)} of 60 received",
            )
            await wait_until(
                recorded(store, "notification_delivered", 60),
                within_s=WAIT_S,
                what="60 deliveries recorded",
            )
            await settle()
            sent = [r.worker.sent for r in replicas]

        counts = server.counts("/hook")
        assert len(counts) == 60 and set(counts.values()) == {1}
        assert sum(sent) == 60
        assert (await notification_events(store.pool)) == {
            "notification_scheduled": 60,
            "notification_delivered": 60,
        }
