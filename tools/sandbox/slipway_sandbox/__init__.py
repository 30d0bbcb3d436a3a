"""Real NATS and PostgreSQL servers on free loopback ports, from their wheels.

Used by `make demo` / `slipway up` and by the test harness. Production points
Slipway at its own servers; nothing here is on a production code path.
"""

from slipway_sandbox.nats import ADMIN, NatsServer, urls_of
from slipway_sandbox.postgres import PostgresServer

__all__ = ["ADMIN", "NatsServer", "PostgresServer", "urls_of"]
