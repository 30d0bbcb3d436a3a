"""Slipway's shared package: the event log, the wire, and the service runtime.

Services import from here and never from each other (DESIGN §2).
"""
