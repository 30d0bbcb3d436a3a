"""Which database role each service logs in as (shared/eventlog/roles.py), and what follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.eventlog.roles import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    role_of_service,
)
from shared.lifecycle import records_lifecycle

SERVICES = sorted(
    p.name
    for p in (Path(__file__).resolve().parents[2] / "services").iterdir()
    if (p / "__main__.py").is_file()
)


def test_the_api_and_the_projector_have_roles_of_their_own() -> None:
    roles = {service: role_of_service(service) for service in SERVICES}
    assert roles.pop("api") == DEFAULT_API_ROLE
    assert roles.pop("projector") == DEFAULT_PROJECTOR_ROLE
    assert set(roles.values()) == {DEFAULT_APP_ROLE}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_whose_role_may_append_records_its_start_and_stop(service: str) -> None:
    """The API's role is a member of the services' (migration 0015): it appends as they do."""
    assert records_lifecycle(service) == (service != "projector")
