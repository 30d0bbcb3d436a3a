"""Notifications (DESIGN §9): which Slipway events become which PipeCD notification, where
they go, and what the message looks like. Pure: no I/O here; the notifier service does it."""
