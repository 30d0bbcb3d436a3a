"""kubesim's TokenRequest: Kubernetes' bounds on a token's lifetime, and tokens it signed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubesim.errors import ApiError
from kubesim.tokens import MAX_EXPIRATION_S, TokenIssuer, bound_reference, requested_expiration

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
ACCOUNT = {"metadata": {"name": "deployer", "namespace": "shop", "uid": "u-1"}}


def _asking(seconds: object) -> dict[str, object]:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }


@pytest.mark.parametrize(
    ("seconds", "granted"), [(None, 3600), (600, 600), (MAX_EXPIRATION_S, MAX_EXPIRATION_S)]
)
def test_a_lifetime_within_kubernetes_bounds_is_granted(seconds: int | None, granted: int) -> None:
    assert requested_expiration(_asking(seconds), "deployer") == granted


@pytest.mark.parametrize(
    ("seconds", "why"),
    [
        (599, "may not specify a duration less than 10 minutes"),
        (MAX_EXPIRATION_S + 1, "may not specify a duration larger than 2^32 seconds"),
    ],
)
def test_a_lifetime_out_of_bounds_is_invalid(seconds: int, why: str) -> None:
    with pytest.raises(ApiError) as caught:
        requested_expiration(_asking(seconds), "deployer")
    assert caught.value.code == 422
    assert caught.value.details["causes"][0]["field"] == "spec.expirationSeconds"
    assert why in caught.value.message


@pytest.mark.parametrize("seconds", ["3600", 3600.5, True])
def test_a_lifetime_that_is_not_an_integer_is_a_bad_request(seconds: object) -> None:
    with pytest.raises(ApiError) as caught:
        requested_expiration(_asking(seconds), "deployer")
    assert caught.value.code == 400


def test_a_token_verifies_until_it_expires_and_only_under_its_issuers_key() -> None:
    issuer = TokenIssuer()
    answer = issuer.token_request(ACCOUNT, _asking(900), NOW)
    token = answer["status"]["token"]
    assert answer["status"]["expirationTimestamp"] == "2026-12-07T21:15:00Z"
    claims = issuer.verify(token, NOW + timedelta(seconds=899))
    assert claims is not None
    assert claims["sub"] == "system:serviceaccount:shop:deployer"
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "deployer", "uid": "u-1"}
    assert issuer.verify(token, NOW + timedelta(seconds=900)) is None
    assert TokenIssuer().verify(token, NOW) is None
    assert issuer.verify("not.a-token", NOW) is None


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ({"kind": "Deployment", "name": "web"}, "spec.boundObjectRef.kind"),
        ({"kind": "Pod", "name": ""}, "spec.boundObjectRef.name"),
    ],
)
def test_a_token_binds_only_to_a_named_pod_secret_or_node(ref: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        bound_reference({"spec": {"boundObjectRef": ref}})
    assert caught.value.code == 422
    assert caught.value.details["causes"][0]["field"] == field
