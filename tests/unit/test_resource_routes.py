"""`resourceRoutes` as PipeCD's piped reads them (`applierGroup`): the first fitting route wins,
labels select every provider that has them, an unknown provider is an error at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import load_application_config
from shared.config.errors import ConfigFileError
from shared.config.resource_routes import ResourceRouter, resource_router

FILE = "web/prd/.pipe.yaml"
PROVIDERS = {
    "dev": {"env": "dev"},
    "prd-tokyo": {"env": "prd", "region": "tokyo"},
    "prd-osaka": {"env": "prd", "region": "osaka"},
}
CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  resourceRoutes:
{routes}"""


def _router(routes: str, default: str = "dev") -> ResourceRouter:
    text = CONFIG.format(routes=routes)
    config = load_application_config(Path(FILE), text)
    return resource_router(config, default, PROVIDERS, config_text=text)


def test_the_first_route_that_fits_wins_and_unmatched_objects_stay_home() -> None:
    router = _router(
        """\
    - match: {kind: Service, name: web}
      provider: {name: prd-osaka}
    - match: {kind: Service}
      provider: {name: prd-tokyo}
    - provider: {}
    - match: {name: cache}
      provider: {name: prd-tokyo}
"""
    )
    assert router.providers_of("Service", "web") == ("prd-osaka",)
    assert router.providers_of("Service", "api") == ("prd-tokyo",)
    assert router.providers_of("StatefulSet", "cache") == ("prd-tokyo",)
    assert router.providers_of("Deployment", "web") == ("dev",)
    assert router.providers == ("dev", "prd-osaka", "prd-tokyo")


def test_a_route_without_match_takes_every_object() -> None:
    router = _router("    - provider: {name: prd-tokyo}\n")
    assert router.providers_of("ConfigMap", "anything") == ("prd-tokyo",)


def test_labels_select_every_provider_that_has_them_all() -> None:
    router = _router(
        """\
    - match: {kind: Deployment}
      provider: {labels: {env: prd}}
    - match: {kind: Service}
      provider: {labels: {env: prd, region: osaka}}
"""
    )
    assert router.providers_of("Deployment", "web") == ("prd-tokyo", "prd-osaka")
    assert router.providers_of("Service", "web") == ("prd-osaka",)


def test_a_label_asked_empty_matches_a_provider_without_it_as_pipecd_reads_labels() -> None:
    router = _router("    - provider: {labels: {env: prd, zone: ''}}\n")
    assert router.providers_of("Service", "web") == ("prd-tokyo", "prd-osaka")


@pytest.mark.parametrize(
    ("route", "line", "named"),
    [
        ("    - provider: {name: prd}\n", 5, "platform provider 'prd' is not in the control"),
        (
            "    - match: {kind: Service}\n      provider:\n        labels: {env: stg}\n",
            7,
            "no platform provider has the labels env=stg",
        ),
    ],
)
def test_a_route_no_provider_answers_is_an_error_at_its_line(
    route: str, line: int, named: str
) -> None:
    with pytest.raises(ConfigFileError) as raised:
        _router(route)
    error = raised.value
    assert (error.file, error.line) == (FILE, line), str(error)
    assert named in error.problem
    assert "dev, prd-tokyo, prd-osaka" in error.problem
    assert str(error).startswith(f"{FILE}:{line}:")


CANARY_APP = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with: {{replicas: 1}}
      - name: K8S_PRIMARY_ROLLOUT
  resourceRoutes:
{routes}"""


def _warnings(routes: str) -> list[tuple[str, str]]:
    config = load_application_config(Path(FILE), CANARY_APP.format(routes=routes))
    return [(w.field_path, w.message) for w in config.warnings]


def test_a_route_by_name_that_leaves_the_canary_copy_elsewhere_is_a_warning() -> None:
    """A canary's copy `web-canary` is routed by its own name (PipeCD's rule): a route taking
    `web` by name alone is warned about; one that also routes the copy, or by kind, is not."""
    by_name = "    - match: {kind: Deployment, name: web}\n      provider: {name: prd-tokyo}\n"
    ((field, message),) = _warnings(by_name)
    assert field == "spec.resourceRoutes[0].match.name"
    assert "'web-canary'" in message and "own platform provider" in message
    elsewhere = by_name + "    - match: {kind: Deployment}\n      provider: {name: prd-osaka}\n"
    ((_, message),) = _warnings(elsewhere)
    assert "spec.resourceRoutes[1]" in message
    with_copy = by_name + (
        "    - match: {kind: Deployment, name: web-canary}\n      provider: {name: prd-tokyo}\n"
    )
    assert _warnings(with_copy) == []
    assert _warnings("    - match: {kind: Deployment}\n      provider: {name: prd-tokyo}\n") == []
