"""The adversarial suite (issue 10): attacks a branch pusher, an API role, a pod on the
network or a webhook sender could try, each against the protection that stops it.

Every test here is marked `security` (see conftest.py), so `pytest -m security` runs the
suite alone; `make test` runs it with everything else.
"""
