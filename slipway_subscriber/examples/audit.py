r"""An audit trail: every Slipway event as one JSON line, each exactly once, across crashes.

    python -m slipway_subscriber.examples.audit --out audit.jsonl \
        --nats nats://subscriber:PASSWORD@nats:4222 --durable subscriber-1
    python -m slipway_subscriber.examples.audit --out audit.jsonl \
        --sse https://slipway.example --api-key-env SLIPWAY_API_KEY

The kit hands each event out at least once (after a crash, the one being
handled comes again); this writer makes that exactly once in effect: at start
it reads the event ids its file already holds (dropping a line a crash cut
short), and skips those. Each line is flushed and fsynced before the kit's
checkpoint moves past it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from slipway_subscriber import FileCheckpoint, NatsSource, Received, SseSource, subscribe
from slipway_subscriber.subscribe import Source

__all__ = ["AuditFile", "main"]


class AuditFile:
    """An append-only JSON-lines file that knows the event ids it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[str] = set()
        if path.exists():
            raw = path.read_bytes()
            whole = raw[: raw.rfind(b"\n") + 1]  # a line cut short by a crash is dropped
            if len(whole) != len(raw):
                with path.open("r+b") as out:
                    out.truncate(len(whole))
            for line in whole.splitlines():
                self.ids.add(json.loads(line)["event_id"])
        self._out = path.open("ab")

    def write(self, received: Received) -> bool:
        """Append the event unless the file holds it; whether it was appended."""
        if received.id in self.ids:
            return False
        document = received.document
        line = {
            "event_id": received.id,
            "cursor": received.position.cursor,
            "event_type": received.type,
            "stream_id": document.get("stream_id", ""),
            "recorded_at": document.get("recorded_at", ""),
            "actor": (document.get("metadata") or {}).get("actor"),
        }
        self._out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())
        self.ids.add(received.id)
        return True

    def close(self) -> None:
        """Close the audit file."""
        self._out.close()


async def run(source: Source, out: Path, checkpoint: Path) -> None:
    audit = AuditFile(out)
    try:
        async for received in subscribe(source, FileCheckpoint(checkpoint)):
            audit.write(received)
    finally:
        audit.close()


def main(argv: list[str] | None = None) -> int:
    """Run the audit subscriber until interrupted; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m slipway_subscriber.examples.audit")
    parser.add_argument("--out", type=Path, required=True, help="the JSON-lines audit file")
    parser.add_argument(
        "--checkpoint", type=Path, help="where the position is kept (default: <out>.checkpoint)"
    )
    way = parser.add_mutually_exclusive_group(required=True)
    way.add_argument("--nats", help="NATS URL with a subscriber identity's credentials")
    way.add_argument("--sse", help="the Slipway API's base URL")
    parser.add_argument(
        "--durable",
        default="subscriber-1",
        help="NATS: the durable's name, one the identity may own (for another the kit stops with "
        "NotPermitted): the sandbox's `subscriber` owns subscriber-1 … subscriber-8",
    )
    parser.add_argument(
        "--api-key-env", default="SLIPWAY_API_KEY", help="SSE: the variable holding the API key"
    )
    args = parser.parse_args(argv)
    source: Source
    if args.nats:
        source = NatsSource(args.nats, durable=args.durable)
    else:
        key = os.environ.get(args.api_key_env, "")
        if not key:
            parser.error(f"--sse needs an API key in ${args.api_key_env}")
        source = SseSource(args.sse, key)
    checkpoint = args.checkpoint or args.out.with_name(args.out.name + ".checkpoint")
    try:
        asyncio.run(run(source, args.out, checkpoint))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
