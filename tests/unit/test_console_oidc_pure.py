"""The OIDC sign-in's pure parts and its configuration: PKCE, groups to roles, a person's
session cookie, and `spec.console.oidc` read (and refused) at start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from services.api.__main__ import ApiSettings, oidc_settings
from services.api.console.oidc import (
    OidcRefused,
    SignedIn,
    pkce_challenge,
    role_of,
    token_refusal,
)
from services.api.console.oidc_sessions import session_length
from services.api.console.sessions import SESSION_TTL_S, SessionCodec
from shared.settings import SettingsError

NOW = 1_800_000_000.0
ROLES = {"sre": "admin", "devs": "read-write", "viewers": "read-only"}


def test_pkce_s256_is_rfc_7636s_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_the_highest_mapped_role_wins_and_no_mapped_group_is_refused() -> None:
    assert role_of({"groups": ["viewers", "devs", "other"]}, "groups", ROLES) == "read-write"  # type: ignore[arg-type]
    assert role_of({"roles": "sre"}, "roles", ROLES) == "admin"  # type: ignore[arg-type]
    for claims in ({"groups": ["other"]}, {}, {"groups": [{"name": "sre"}]}):
        with pytest.raises(OidcRefused, match="no group"):
            role_of(claims, "groups", ROLES)  # type: ignore[arg-type]
    with pytest.raises(OidcRefused, match="not a list"):
        role_of({"groups": {"sre": True}}, "groups", ROLES)  # type: ignore[arg-type]


def test_a_persons_session_names_its_row_and_cannot_be_edited() -> None:
    codec = SessionCodec(b"k" * 32)
    mine, theirs = "0" * 26, "1" * 26
    cookie = codec.issue_oidc(mine, NOW, ttl_s=60)
    token = codec.read(cookie, NOW + 1)
    assert token is not None
    assert (token.oidc_session, token.key_id) == (mine, "")
    assert codec.read(cookie, NOW + 61) is None
    _body, signature = cookie.rsplit(".", 1)
    other = SessionCodec(b"k" * 32).issue_oidc(theirs, NOW)
    assert codec.read(f"{other.rsplit('.', 1)[0]}.{signature}", NOW + 1) is None
    assert SessionCodec(b"x" * 32).read(cookie, NOW + 1) is None
    with pytest.raises(ValueError, match="not a session id"):
        codec.issue_oidc("alice", NOW)


def test_a_session_without_a_refresh_token_ends_at_its_first_role_check() -> None:
    refreshable = SignedIn("alice", "sub-1", "admin", refresh_token="r")
    assert session_length(refreshable, 900) == SESSION_TTL_S
    assert session_length(replace(refreshable, refresh_token=""), 900) == 900
    assert session_length(replace(refreshable, refresh_token=""), 10**9) == SESSION_TTL_S


def _config(tmp_path: Path, oidc: str) -> ApiSettings:
    path = tmp_path / "slipway.yaml"
    path.write_text(
        "apiVersion: slipway.dev/v1\nkind: Slipway\nspec:\n  project: p\n"
        f"  console:\n    oidc:\n{oidc}"
    )
    return ApiSettings(database_url="postgresql://x/y", control_config=str(path))


def test_the_configuration_is_read_with_its_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    settings = oidc_settings(
        _config(
            tmp_path,
            "      issuer: https://login.example.com\n      clientId: slipway\n"
            f"      clientSecretFile: {tmp_path / 'secret'}\n"
            "      groupRoles: {sre: admin, devs: read-write}\n",
        )
    )
    assert settings is not None
    assert settings.client_secret == "s3cret" and settings.groups_claim == "groups"
    assert settings.scopes == ("openid", "email", "profile")
    assert dict(settings.group_roles) == {"sre": "admin", "devs": "read-write"}
    assert settings.role_check_s == 900  # 15 minutes unless configured


def test_a_bad_configuration_stops_the_api_naming_each_field(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        oidc_settings(
            _config(
                tmp_path,
                "      issuer: login.example.com\n      clientId: slipway\n      scopes: [email]\n"
                "      roleCheckInterval: 24h\n",
            )
        )
    problems = " ".join(caught.value.problems)
    for field in (
        "spec.console.oidc.issuer",
        "scopes must include openid",
        "groupRoles",
        "roleCheckInterval must be between 1s and 12h",
    ):
        assert field in problems, problems
    with pytest.raises(SettingsError, match="clientSecretFile"):
        oidc_settings(
            _config(
                tmp_path,
                "      issuer: https://i\n      clientId: c\n      groupRoles: {a: admin}\n"
                f"      clientSecretFile: {tmp_path / 'missing'}\n",
            )
        )


def test_a_token_endpoints_refusal_is_one_short_printable_line() -> None:
    """The provider's words come from outside: they reach a page and a log line, so a
    forged line break, an escape sequence or a flood is not passed on."""
    answer = {
        "error": "invalid_grant\nadmin_login: ok",
        "error_description": "\x1b[2JCode challenge failed." + "x" * 500,
        "error_uri": "https://evil.example/",
    }
    said = token_refusal(400, answer)
    assert said.startswith("400 invalid_grantadmin_login: ok [2JCode challenge failed.")
    assert "\n" not in said and "\x1b" not in said and "evil" not in said
    assert len(said) <= 4 + 200 + 1 + 200
    assert token_refusal(503, "not json") == "503"
