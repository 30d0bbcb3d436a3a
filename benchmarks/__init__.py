"""Benchmarks: each prints one JSON object comparing Slipway with a peer or the raw limit."""
