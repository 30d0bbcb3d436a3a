"""How running or rebuilding a projection can fail, within the one error tree (shared/errors.py).

```
SlipwayError
├── Unavailable
│   └── ReplayInProgress     another replay of this projection holds its lock: try later
└── ConfigError
    └── ProjectionOutdated   the database holds a newer version than this build's code
```
"""

from __future__ import annotations

from shared.errors import ConfigError, Unavailable


class ReplayInProgress(Unavailable):
    """Another process is rebuilding the same projection right now."""


class ProjectionOutdated(ConfigError):
    """This build's projection code is older than the version the live tables were built by."""
