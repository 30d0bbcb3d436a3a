"""The security layer: the adversarial suite (`pytest -m security`, docs/security.md).

A test belongs here when it attacks: a hostile config repository, webhook, API caller,
NATS user, metrics target or script, and checks that Slipway refuses it or contains it.
Each test is marked `security` by the root conftest, from this folder's name.
"""
