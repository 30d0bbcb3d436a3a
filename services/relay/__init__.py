"""The relay: publishes each committed event of the log to JetStream, once (README.md)."""
