"""`oidc-provider-mock`'s provider app, built here so that it enforces PKCE (RFC 7636, S256).

The package's own app accepts an authorization code without any `code_verifier`, so a
console that sent a wrong verifier (or none) would still be let in, and our tests would
only show that we *send* PKCE. This app is the package's, with its authorization server
swapped for one whose authorization code grant carries authlib's PKCE extension, made
strict: every authorization request must bring an S256 `code_challenge`, the code keeps
it, and the token request must bring the verifier that hashes to it, confidential client
or not. Nothing of the installed package is changed: the swap is a `before_request` of
our app, after the package's own (which sets the server the package's views use).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Final

import flask
import werkzeug.serving
from authlib.integrations import flask_oauth2
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from oidc_provider_mock import app as provider_app
from oidc_provider_mock._app import AuthorizationCodeGrant, OpenIDCode, RefreshTokenGrant
from oidc_provider_mock._storage import AuthorizationCode, storage

__all__ = ["pkce_provider_app", "serving"]

_SERVER: Final = "_authlib_authorization_server"
"""Where the package's views find their authorization server (`flask.g`)."""
_TOKEN_MAX_AGE: Final = timedelta(hours=1)
"""The package's default lifetime of access and ID tokens."""


@dataclass(kw_only=True, frozen=True)
class _ChallengedCode(AuthorizationCode):  # type: ignore[misc]
    """An authorization code that remembers the PKCE challenge it was issued for."""

    code_challenge: str
    code_challenge_method: str


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    """The package's code grant, keeping the request's challenge with the code."""

    def save_authorization_code(self, code: str, request: Any) -> None:
        super().save_authorization_code(code, request)
        saved = storage.get_authorization_code(code)
        data = request.payload.data
        storage.store_authorization_code(
            _ChallengedCode(
                **asdict(saved),
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
            )
        )


class _S256Required(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only: authlib's extension asks a verifier only of public
    clients, and takes `plain` (or no method) too."""

    SUPPORTED_CODE_CHALLENGE_METHOD: Final = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: the request has no 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required with code_challenge_method=S256")
        super().validate_code_challenge(grant, redirect_uri)


def pkce_provider_app(*, refresh_tokens: bool = True) -> flask.Flask:
    """The provider's Flask app, enforcing PKCE with S256; it issues refresh tokens unless
    `refresh_tokens` is False."""
    app: flask.Flask = provider_app(issue_refresh_token=refresh_tokens)
    with app.test_request_context():
        app.preprocess_request()  # the package's own hook: its server, for its storage calls
        plain = getattr(flask.g, _SERVER)
    strict = flask_oauth2.AuthorizationServer()
    strict.init_app(app, query_client=plain.query_client, save_token=plain.save_token)
    strict.register_grant(
        _CodeGrant,
        [OpenIDCode(require_nonce=False, token_max_age=_TOKEN_MAX_AGE), _S256Required()],
    )
    strict.register_grant(RefreshTokenGrant)

    @app.before_request
    def use_strict_server() -> None:
        setattr(flask.g, _SERVER, strict)

    return app


@contextmanager
def serving(app: flask.Flask) -> Iterator[int]:
    """`app` served from a thread on a free port of localhost until the block ends; the port."""
    server = werkzeug.serving.make_server("localhost", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
