"""The console's pure parts: session cookies and CSRF tokens, and an analysis as chart data."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import structlog

from services.api.console.charts import analysis_chart
from services.api.console.db_clock import DatabaseClock
from services.api.console.keyring import PUBLISH_S, Keyring, StoredKey, keyring_of, retired
from services.api.console.sessions import SessionCodec
from shared.events.base import Event, Metadata, RecordedEvent
from shared.events.catalog import (
    AnalysisCheck,
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisStarted,
    AnalysisTickJudged,
)
from shared.events.vocabulary import CheckKind, CheckStrategy, SampleRole, TickOutcome, Verdict

KEY_ID = "0" * 26
NOW = 1_800_000_000.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_session_cookie_names_its_key_until_it_expires() -> None:
    codec = SessionCodec(b"k" * 32)
    cookie = codec.issue(KEY_ID, NOW, ttl_s=60)
    token = codec.read(cookie, NOW + 59)
    assert token is not None and token.key_id == KEY_ID
    assert codec.read(cookie, NOW + 60) is None  # expired


def test_a_forged_or_tampered_cookie_names_nobody() -> None:
    codec = SessionCodec(b"k" * 32)
    cookie = codec.issue(KEY_ID, NOW)
    body, _, signature = cookie.rpartition(".")
    other_key = "1" * 26
    assert codec.read(body.replace(KEY_ID, other_key) + "." + signature, NOW) is None
    # A later expiry, signed by nobody who knows the key.
    key_id, expires, nonce = body.split(".")
    assert codec.read(f"{key_id}.{int(expires) + 10**6}.{nonce}.{signature}", NOW) is None
    assert SessionCodec(b"x" * 32).read(cookie, NOW) is None  # another deployment's key
    for junk in ("", ".", "a.b.c.d", "x" * 300, f"{KEY_ID}.1.2"):
        assert codec.read(junk, NOW) is None


def test_the_csrf_token_is_bound_to_its_session() -> None:
    codec = SessionCodec(b"k" * 32)
    mine, theirs = codec.issue(KEY_ID, NOW), codec.issue(KEY_ID, NOW)
    assert codec.csrf_ok(mine, codec.csrf(mine))
    assert not codec.csrf_ok(mine, codec.csrf(theirs))
    assert not codec.csrf_ok(mine, "")
    assert not codec.csrf_ok("", codec.csrf(""))  # no session, no valid token


def _recorded(events: list[Event]) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            global_position=i + 1,
            tx_id=1,
            stream_id="analysis-a1",
            stream_version=i,
            event_id=uuid.uuid4(),
            event_type=type(e).__struct_config__.tag,  # type: ignore[arg-type]
            schema_version=1,
            event=e,
            metadata=Metadata(),
            recorded_at=T0,
        )
        for i, e in enumerate(events)
    ]


def test_an_analysis_becomes_series_per_variant_with_its_bounds_and_verdicts() -> None:
    check = "metrics[0] error-rate"
    history = _recorded(
        [
            AnalysisStarted(
                analysis_id="a1",
                deployment_id="d1",
                stage_id="s1",
                started_at=T0,
                judge="sequential",
                checks=(
                    AnalysisCheck(
                        key=check,
                        kind=CheckKind("metrics"),
                        strategy=CheckStrategy("CANARY_BASELINE"),
                        interval_s=5,
                        expected_max=0.01,
                    ),
                ),
            ),
            AnalysisMeasured(
                analysis_id="a1",
                check=check,
                tick=1,
                role=SampleRole("experiment"),
                variant="canary",
                timestamps=(100.0, 105.0, 110.0),
                values=("0.5", "NaN", "0.7"),
            ),
            AnalysisMeasured(
                analysis_id="a1",
                check=check,
                tick=1,
                role=SampleRole("control"),
                variant="baseline",
                timestamps=(100.0, 105.0),
                values=("0.001", "+Inf"),
            ),
            # The next tick's window overlaps the first: a sample is drawn once.
            AnalysisMeasured(
                analysis_id="a1",
                check=check,
                tick=2,
                role=SampleRole("experiment"),
                variant="canary",
                timestamps=(110.0, 115.0),
                values=("0.7", "0.9"),
            ),
            AnalysisMeasured(
                analysis_id="a1",
                check=check,
                tick=2,
                role=SampleRole("control"),
                variant="baseline",
                error="prometheus: timeout",
            ),
            AnalysisTickJudged(
                analysis_id="a1",
                check=check,
                tick=2,
                at_s=10.0,
                strategy=CheckStrategy("CANARY_BASELINE"),
                outcome=TickOutcome("fail"),
                reason="canary above baseline",
                judge="sequential",
                judge_version="2",
                statistics=(("p", "0.001"),),
            ),
            AnalysisConcluded(
                analysis_id="a1",
                deployment_id="d1",
                stage_id="s1",
                verdict=Verdict("failure"),
                reason="canary above baseline",
            ),
        ]
    )
    chart = analysis_chart("a1", history)
    assert chart.verdict == "failure" and chart.judge == "sequential"
    drawn = chart.checks[check]
    assert drawn.expected_max == 0.01 and drawn.expected_min is None
    # NaN and infinities are gaps, never numbers; each timestamp once.
    assert drawn.series["canary"].points == [(100.0, 0.5), (110.0, 0.7), (115.0, 0.9)]
    assert drawn.series["baseline"].points == [(100.0, 0.001)]
    assert drawn.errors == ["tick 2: prometheus: timeout"]
    (verdict,) = drawn.verdicts
    assert verdict.outcome == "fail" and verdict.statistics == (("p", "0.001"),)
    as_json = chart.as_json()["checks"][0]
    assert all(math.isfinite(y) for s in as_json["series"] for _, y in s["points"])


def test_a_ratio_of_rates_draws_each_counter_on_its_own_line() -> None:
    check = "metrics[0] errors"
    history = _recorded(
        [
            AnalysisMeasured(
                analysis_id="a1", check=check, tick=1, role=SampleRole(role), variant="canary",
                timestamps=(100.0,), values=(value,),
            )
            for role, value in (("experiment_events", "3"), ("experiment_total", "300"))
        ]
    )  # fmt: skip
    series = analysis_chart("a1", history).checks[check].series
    assert {label: s.points for label, s in series.items()} == {
        "canary events": [(100.0, 3.0)],
        "canary total": [(100.0, 300.0)],
    }


def test_a_new_key_signs_once_published_and_the_old_one_verifies_until_its_sessions_end() -> None:
    ttl = 12 * 3600
    keys = [StoredKey(1, b"a" * 32, 0.0), StoredKey(2, b"b" * 32, 1000.0)]
    assert keyring_of(keys[:1], 5.0, ttl) == Keyring("1", {"1": b"a" * 32})
    before = keyring_of(keys, 1000.0 + PUBLISH_S - 1, ttl)  # key 2 known, not signing yet
    assert before.signing == "1" and set(before.keys) == {"1", "2"}
    assert before.changes_at == 1000.0 + PUBLISH_S  # read the keys again when key 2 signs
    after = keyring_of(keys, 1000.0 + PUBLISH_S, ttl)
    assert after.signing == "2" and set(after.keys) == {"1", "2"}
    ended = 1000.0 + PUBLISH_S + ttl
    assert after.changes_at == ended  # and when key 1 stops verifying
    assert set(keyring_of(keys, ended, ttl).keys) == {"2"}
    assert keyring_of(keys, ended, ttl).changes_at == math.inf
    assert retired(keys, ended - 1, ttl) == [] and retired(keys, ended, ttl) == [1]
    # A cookie naming no key, or something that is not a key id, is refused.
    codec = SessionCodec(after)
    cookie = codec.issue(KEY_ID, NOW)
    body, _, signature = cookie.rpartition(".")
    mac = signature.partition(":")[2]
    for kid in ("3", "", "../1", "e"):
        assert codec.read(f"{body}.{kid}:{mac}", NOW) is None
    assert codec.read(cookie, NOW) is not None
    assert SessionCodec(Keyring()).read(cookie, NOW) is None  # keys not loaded: nothing verifies


def test_the_console_clock_is_the_databases_carried_on_the_monotonic_clock() -> None:
    """The replica's wall clock is only compared with the database's, to warn (once)."""
    wall, ticks = [NOW + 600.0], [50.0]
    clock = DatabaseClock(lambda: wall[0], monotonic=lambda: ticks[0])
    assert clock.now() == NOW + 600.0  # nothing read from the database yet: the replica's
    with structlog.testing.capture_logs() as logged:
        clock.saw(NOW)
        ticks[0] += 30.0
        wall[0] += 30.0
        assert clock.now() == NOW + 30.0
        clock.saw(NOW + 31.0)
    assert clock.now() == NOW + 31.0
    warned = [e for e in logged if e["event"] == "console_clock_off_from_the_database"]
    assert [e["ahead_s"] for e in warned] == [600.0]
    with structlog.testing.capture_logs() as logged:
        DatabaseClock(lambda: NOW + 4.0).saw(NOW)  # within 5 s: no warning
    assert logged == []
