"""The security benchmark: a catalogue of attacks against a running sandbox (issue 10)."""
