"""`POST /api/v1/secrets:encrypt` and `slipway encrypt` over it: read-write keys, nothing kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from shared.secrets import decrypt_with
from slipway_cli import main
from tests.support.api import auth_headers, served_api

ENCRYPT = f"{API_PREFIX}/secrets:encrypt"
PLAINTEXT = "api-s3cret-4b1d"


async def _post(url: str, key: str, body: object) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(base_url=url, headers=dict(auth_headers(key))) as http,
        http.post(ENCRYPT, json=body) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_read_write_keys_encrypt_for_the_configured_key(
    store: EventStore, api_pool: asyncpg.Pool, key: rsa.RSAPrivateKey, tmp_path: Path, capsys
) -> None:
    writer = await create_api_key(store, "read-write", "ci")
    reader = await create_api_key(store, "read-only", "viewer")
    async with served_api(store, api_pool, secret_public_key=key.public_key()) as url:
        status, answer = await _post(url, writer, {"data": PLAINTEXT})
        assert status == 200, answer
        assert decrypt_with(answer["ciphertext"], key, "x") == PLAINTEXT
        status, answer = await _post(url, reader, {"data": PLAINTEXT})
        assert (status, answer["error"]["code"]) == (403, "forbidden")
        status, answer = await _post(url, writer, {"data": ""})
        assert status == 400 and answer["error"]["field"] == "data"

        secret = tmp_path / "secret"
        secret.write_text(PLAINTEXT)
        args = ["encrypt", "--input-file", str(secret), "--api-url", url, "--api-key", writer]
        assert await asyncio.to_thread(main, args) == 0
        out = capsys.readouterr().out  # the CLI's answer, after the in-process API's log lines
        assert decrypt_with(out.strip().splitlines()[-1], key, "x") == PLAINTEXT
        service_log = "\n".join(out.strip().splitlines()[:-1])
        assert "route=encryptSecret status=200" in service_log
        assert PLAINTEXT not in service_log

    async with served_api(store, api_pool, admin_name="admin-2") as url:
        status, answer = await _post(url, writer, {"data": PLAINTEXT})
        assert status == 503 and "secretManagement" in answer["error"]["message"]

    async with store.pool.acquire() as conn:
        events = await conn.fetch("SELECT payload, metadata::text AS metadata FROM events")
    stored = b"\n".join(r["payload"] + r["metadata"].encode() for r in events)
    assert b"viewer" in stored  # the grep finds what is there: the keys' events
    assert PLAINTEXT.encode() not in stored
