"""The projector: keeps the read models up to date with the log (README.md)."""
