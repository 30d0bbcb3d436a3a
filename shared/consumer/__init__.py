"""The consumer runtime (`runtime`), its failure policy (`failures`) and its tables (`tables`)."""

from shared.consumer.failures import is_unavailable
from shared.consumer.runtime import ConsumerStats, EventConsumer, Handler, subject_filters

__all__ = ["ConsumerStats", "EventConsumer", "Handler", "is_unavailable", "subject_filters"]
