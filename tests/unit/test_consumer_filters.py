"""A consumer's NATS subject filters are derived from the event classes it declares."""

from __future__ import annotations

import pytest

from services.analysis.service import HANDLES as ANALYSIS_HANDLES
from services.executor.handlers import HANDLES as EXECUTOR_HANDLES
from services.executor.handlers import Ignore, on_event
from services.notifier.service import HANDLES as NOTIFIER_HANDLES
from services.planner.service import HANDLES as PLANNER_HANDLES
from shared.consumer import subject_filters
from shared.events.base import Event
from shared.events.catalog import ALL_EVENTS, SyncRequested
from shared.events.codec import tag_of
from shared.subjects import Subjects

SUBJECTS = Subjects("filtertest")

DECLARED: dict[str, tuple[type[Event], ...] | None] = {
    "analysis": ANALYSIS_HANDLES,
    "executor": EXECUTOR_HANDLES,
    "notifier": NOTIFIER_HANDLES,
    "planner": PLANNER_HANDLES,
    "gitwatcher-sync": (SyncRequested,),
}


def matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` is one or more."""
    pattern, tokens = filter_subject.split("."), subject.split(".")
    for index, part in enumerate(pattern):
        if part == ">":
            return len(tokens) > index
        if index >= len(tokens) or part not in ("*", tokens[index]):
            return False
    return len(tokens) == len(pattern)


def delivered(filters: list[str], event_type: type[Event]) -> bool:
    """Whether a consumer with `filters` gets an event of `event_type` (on any stream)."""
    subject = SUBJECTS.event("somecategory-some_id", tag_of(event_type))
    return any(matches(f, subject) for f in filters)


@pytest.mark.parametrize("consumer", sorted(DECLARED))
def test_a_consumers_filter_covers_exactly_its_classes(consumer: str) -> None:
    """Of all the catalog's events, the filter lets through exactly the declared classes."""
    handles = DECLARED[consumer]
    filters = subject_filters(SUBJECTS, handles)
    expected = set(ALL_EVENTS) if handles is None else set(handles)
    assert {e for e in ALL_EVENTS if delivered(filters, e)} == expected


def test_the_matcher_is_natss() -> None:
    """The test's matcher agrees with NATS on the shapes the filters use."""
    assert matches("a.evt.*.*.x", "a.evt.deployment.deployment-1.x")
    assert not matches("a.evt.*.*.x", "a.evt.deployment.deployment-1.y")
    assert not matches("a.evt.*.*.x", "a.evt.deployment.x")
    assert matches("a.evt.>", "a.evt.deployment.deployment-1.x")
    assert not matches("a.evt.>", "a.evt")


def test_no_classes_is_refused_and_duplicates_are_one_filter() -> None:
    """An empty declaration is a mistake (None means every event); a repeat adds nothing."""
    with pytest.raises(ValueError, match="at least one event class"):
        subject_filters(SUBJECTS, ())
    assert subject_filters(SUBJECTS, (SyncRequested, SyncRequested)) == [
        "filtertest.evt.*.*.sync_requested"
    ]


def test_the_executor_reacts_to_every_class_it_declares() -> None:
    """Nothing the executor's filter lets in is ignored by its reaction, and nothing else."""
    for event_type in ALL_EVENTS:
        fields = dict.fromkeys(event_type.__struct_fields__, "x")
        reacted = not isinstance(on_event(event_type(**fields)), Ignore)
        assert reacted == (event_type in EXECUTOR_HANDLES), event_type.__name__
