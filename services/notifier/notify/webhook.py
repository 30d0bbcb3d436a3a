"""The generic webhook: a `Message` as JSON, signed with HMAC-SHA256.

The signature header (`signatureKey`, `Slipway-Signature` by default) holds
`sha256=<hex HMAC-SHA256 of the exact body bytes under the shared secret>`,
as GitHub signs its webhooks, so a receiver verifies it with a few lines of
any language and a forged or altered body fails. (PipeCD's own webhook sends
the secret itself in the header; a Piped config's `signatureValue` is used
here as the HMAC key instead, so the secret never travels.)

Every request of one notification, first try or retry, carries the same
`Slipway-Delivery` id (also the body's `id`): a receiver that remembers the
ids it handled drops the rare repeat (see the service README's guarantee).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

import msgspec

from services.notifier.notify.message import Message

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "request_headers",
    "sign",
    "verify",
    "webhook_body",
]

DELIVERY_HEADER: Final = "Slipway-Delivery"
EVENT_HEADER: Final = "Slipway-Event"
_PREFIX: Final = "sha256="

_encoder = msgspec.json.Encoder(order="deterministic")


def webhook_body(message: Message) -> bytes:
    """The JSON body, byte for byte the same whenever the same message is encoded."""
    return _encoder.encode(message)


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for `body`."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time compare)."""
    if not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body), header)


def request_headers(
    *,
    delivery_id: str,
    notification_type: str,
    body: bytes,
    signature_key: str = "",
    secret: bytes = b"",
) -> dict[str, str]:
    """The headers of one POST: content type, delivery id, event type and (with a secret) the
    signature."""
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: notification_type,
    }
    if secret and signature_key:
        headers[signature_key] = sign(secret, body)
    return headers
