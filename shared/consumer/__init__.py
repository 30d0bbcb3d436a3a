"""The consumer runtime (`runtime`: the fetch loop, redrive, pruning), one pull of a batch
(`fetching`), one batch's transaction (`handling`), what becomes of each message (`settling`),
the failure policy (`failures`), the counters (`stats`) and the tables (`tables`)."""

from shared.consumer.failures import is_unavailable
from shared.consumer.runtime import ConsumerStats, EventConsumer, Handler, Prepare, subject_filters

__all__ = [
    "ConsumerStats",
    "EventConsumer",
    "Handler",
    "Prepare",
    "is_unavailable",
    "subject_filters",
]
