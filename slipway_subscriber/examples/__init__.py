"""Runnable subscribers built on the kit (`python -m slipway_subscriber.examples.<name>`)."""
