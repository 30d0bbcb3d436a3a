"""The api service: registrations and commands over HTTP, backed by events (DESIGN §10)."""
