"""The database roles Slipway's processes log in as, and which process uses which.

The migrations create them all and grant each only what its users need
(shared/eventlog/migrations/0008_least_privilege.sql); none owns a table of the log.
"""

from __future__ import annotations

from typing import Final

DEFAULT_APP_ROLE: Final = "slipway_app"
"""Every service but the projector and the API: appends events, writes its working tables,
creates nothing."""
DEFAULT_PROJECTOR_ROLE: Final = "slipway_projector"
"""The projector and `slipway replay`: read the log, build projections (the one role to CREATE)."""

DEFAULT_API_ROLE: Final = "slipway_api"
"""The API: a member of the services' role (every right it has) and the one role that may read
the console's secrets, the keys that sign session cookies and OIDC refresh tokens (migration
0015): whoever holds another service's credentials cannot forge a console session with them."""

DEFAULT_READER_ROLE: Final = "slipway_reader"
"""Read-only query paths (`slipway analysis rejudge`, audits): the record, nothing else."""

PROJECTOR_SERVICE: Final = "projector"
API_SERVICE: Final = "api"

_OWN_ROLES: Final = {PROJECTOR_SERVICE: DEFAULT_PROJECTOR_ROLE, API_SERVICE: DEFAULT_API_ROLE}


def role_of_service(service: str) -> str:
    """The role `service` (a name under services/) logs in as."""
    return _OWN_ROLES.get(service, DEFAULT_APP_ROLE)


def appends_events(role: str) -> bool:
    """Whether `role` may append to the log (the services' role and the API's, a member of it)."""
    return role in (DEFAULT_APP_ROLE, DEFAULT_API_ROLE)
