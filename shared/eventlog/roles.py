"""The database roles Slipway's processes log in as, and which process uses which.

The migrations create them all and grant each only what its users need
(shared/eventlog/migrations/0008_least_privilege.sql); none owns a table of the log.
"""

from __future__ import annotations

from typing import Final

DEFAULT_APP_ROLE: Final = "slipway_app"
"""Every service but the projector: appends events, writes its working tables, creates nothing."""
DEFAULT_PROJECTOR_ROLE: Final = "slipway_projector"
"""The projector and `slipway replay`: read the log, build projections (the one role to CREATE)."""

DEFAULT_READER_ROLE: Final = "slipway_reader"
"""Read-only query paths (`slipway analysis rejudge`, audits): the record, nothing else."""

PROJECTOR_SERVICE: Final = "projector"


def role_of_service(service: str) -> str:
    """The role `service` (a name under services/) logs in as."""
    return DEFAULT_PROJECTOR_ROLE if service == PROJECTOR_SERVICE else DEFAULT_APP_ROLE
