"""`/secrets:encrypt`: a secret encrypted for the configured key, so developers need no key file.

The answer is PipeCD's hybrid format (`shared.secrets`); the plaintext is
neither stored, nor recorded, nor logged. Only the public key is used here:
the API cannot decrypt.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.routes import Answer, Route
from services.api.schemas import EncryptedSecret, EncryptSecretRequest
from services.api.wire import json_response, read_body
from shared.secrets import encrypt

__all__ = ["ROUTES"]


async def encrypt_secret(request: web.Request) -> web.Response:
    body = await read_body(request, EncryptSecretRequest)
    key = deps(request).secret_public_key
    if key is None:
        raise ErrorReply(
            503,
            "unavailable",
            "no secretManagement key pair in the control config (SLIPWAY_CONTROL_CONFIG)",
        )
    return json_response(EncryptedSecret(ciphertext=encrypt(body.data, key)))


ROUTES: Final = (
    Route(
        "POST",
        "/secrets:encrypt",
        encrypt_secret,
        "encryptSecret",
        Access.WRITE,
        summary="Encrypt a secret for git (read-write)",
        tag="secrets",
        answers=(Answer(200, "The ciphertext.", EncryptedSecret),),
        errors=(400, 503),
        description="PipeCD's hybrid format (RSA-OAEP-SHA256 + AES-256-GCM), for the "
        "control config's `secretManagement` public key; 503 when none is configured. "
        "The secret is neither stored nor logged.",
        body=EncryptSecretRequest,
    ),
)
