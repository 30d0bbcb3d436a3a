"""Slipway's shared package: the event log, the wire, and the service runtime.

Services import from here and never from each other (DESIGN §2). Only what more than
one service runs belongs here: single-service code lives in its service, and the tools
and clients live in their own packages (`kubesim`, `slipway_cli`, the sandbox's
`slipway_sandbox`), which `shared` never imports (pyproject's import contracts).
"""
