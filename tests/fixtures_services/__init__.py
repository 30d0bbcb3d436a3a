"""Tiny services that the runtime tests start as real processes."""
