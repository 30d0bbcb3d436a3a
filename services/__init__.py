"""Slipway's services: independent asyncio processes that share only `shared/` and the wire."""
