"""The integration layer: one service, store or tool against real servers and processes.

A test belongs here when it needs something real outside this process - PostgreSQL,
NATS, kubesim, a local HTTP server, a git repository, helm or kubectl, a subprocess of
the CLI or of one service - but exercises one component (one service with the relay
it needs, the event log, the API, kubesim itself). Several services together belong in
tests/e2e; killed processes and injected faults in tests/chaos.
"""
