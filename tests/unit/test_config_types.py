"""The value types: Duration, Replicas, Percentage, Regex, and encoding a config back."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import (
    Duration,
    KubernetesApplicationSpec,
    Percentage,
    Regex,
    Replicas,
    dec_hook,
    enc_hook,
    load_application_config,
)
from tests.support.paths import CONFIG_FIXTURES

REPO = CONFIG_FIXTURES / "repo"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("300ms", 0.3),
        ("2h45m30.5s", 9930.5),
        ("1us", 0.000001),
        ("0", 0),
        ("+3s", 3),
    ],
)
def test_duration_parses_go_syntax(text: str, seconds: float) -> None:
    """Go's time.ParseDuration forms parse to the right number of seconds."""
    assert Duration.parse(text).seconds == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "5 m", "1d", "h", "1h-5m", "-1s", "1.2.3s"])
def test_duration_rejects_non_go_syntax(text: str) -> None:
    """Anything time.ParseDuration would refuse (or a negative) is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        Duration.parse(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("90m", "1h30m0s"), ("10s", "10s"), ("1.5s", "1.5s"), ("250ms", "250ms"), ("0s", "0s")],
)
def test_duration_prints_like_go(text: str, shown: str) -> None:
    """str(Duration) is Go's Duration.String()."""
    assert str(Duration.parse(text)) == shown


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_duration_text_round_trips(nanoseconds: int) -> None:
    """Printing then parsing a Duration gives it back exactly."""
    duration = Duration(nanoseconds)
    assert Duration.parse(str(duration)) == duration


def test_replicas_forms_and_calculation() -> None:
    """Replicas read N, "N" and "N%", and a percentage of the primary rounds up."""
    assert Replicas.parse(3) == Replicas(3)
    assert Replicas.parse("3") == Replicas(3)
    assert Replicas.parse("30%") == Replicas(30, is_percentage=True)
    assert Replicas(30, is_percentage=True).calculate(total=4) == 2
    assert Replicas(0).calculate(total=4) == 1
    for bad in ("ten", "-1", True, 1.5, None, "10 %%"):
        with pytest.raises(ValueError, match='expected an integer or a percentage like "10%"'):
            Replicas.parse(bad)


def test_percentage_bounds() -> None:
    """A traffic percentage is 0–100, with or without the % sign."""
    assert Percentage.parse("10%").number == 10
    assert Percentage.parse(100).number == 100
    for bad in (101, "-5", "x%", False):
        with pytest.raises(ValueError, match="percentage from 0 to 100"):
            Percentage.parse(bad)


def test_empty_regex_never_matches() -> None:
    """An empty commit matcher means unset (PipeCD's reading), not match-everything."""
    assert Regex("").search("anything") is None
    assert Regex(r"^\[quick\]").search("[quick] bump") is not None


def test_value_types_are_immutable() -> None:
    """The value types cannot be changed after creation."""
    with pytest.raises(AttributeError):
        Duration(1).__setattr__("_ns", 2)


def test_loaded_spec_encodes_and_decodes_to_the_same_value() -> None:
    """A loaded spec survives msgspec JSON encoding with enc_hook/dec_hook (for events)."""
    app = load_application_config(REPO / "account" / "prd" / "app.pipecd.yaml")
    payload = msgspec.json.encode(app.spec, enc_hook=enc_hook)
    decoded = msgspec.json.decode(payload, type=KubernetesApplicationSpec, dec_hook=dec_hook)
    assert decoded == app.spec
