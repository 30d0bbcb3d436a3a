"""Application labels: the rule they follow, where a config file's are recorded, the merge.

A label reaches the event log, the `applications` read model (a jsonb index
that refuses NUL characters), SQL filters and people's terminals, from an API
caller or from a repository's `spec.labels`. Both are untrusted, so both pass
the same rule: Kubernetes-style keys and values, at most `MAX_LABELS` of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from shared.events.base import Event
from shared.events.catalog import ApplicationConfigObserved

__all__ = [
    "LABEL_KEY_PATTERN",
    "LABEL_RULE",
    "LABEL_VALUE_PATTERN",
    "MAX_LABELS",
    "config_labels_of",
    "is_valid_label",
    "merge_labels",
    "usable_labels",
]

LABEL_KEY_PATTERN: Final = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN: Final = r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$"
MAX_LABELS: Final = 64
LABEL_RULE: Final = (
    f"at most {MAX_LABELS} labels; keys up to 63 letters, digits and ._/-, values "
    "empty or up to 63 letters, digits and ._- (both starting and ending alphanumeric)"
)

_KEY: Final = re.compile(LABEL_KEY_PATTERN)
_VALUE: Final = re.compile(LABEL_VALUE_PATTERN)


def is_valid_label(key: str, value: str) -> bool:
    """Whether a key and value are a valid Kubernetes label."""
    return bool(_KEY.fullmatch(key) and _VALUE.fullmatch(value))


def usable_labels(
    labels: Iterable[tuple[str, str]],
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(the valid labels, sorted, at most `MAX_LABELS`; the keys of the others, each cut to
    64 characters and quoted) — what may be recorded, and what to say was left out."""
    kept: list[tuple[str, str]] = []
    refused: list[str] = []
    for key, value in sorted(labels):
        if is_valid_label(key, value) and len(kept) < MAX_LABELS:
            kept.append((key, value))
        else:
            refused.append(repr(key[:64]))
    return tuple(kept), tuple(refused)


def merge_labels(
    registered: Iterable[tuple[str, str]], config: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """An application's labels: the registration's, then its config file's over them (PipeCD
    takes labels from the config). The `applications` projection does the same in SQL (`||`)."""
    return dict(registered) | dict(config)


def config_labels_of(events: Iterable[Event]) -> tuple[tuple[str, str], ...] | None:
    """The config labels an `appconfig-<id>` stream last recorded; None if it recorded none."""
    labels = None
    for event in events:
        if isinstance(event, ApplicationConfigObserved):
            labels = event.labels
    return labels
