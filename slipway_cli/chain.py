"""`slipway chain …`: deployment chains (`postSync.chain`): list, get, cancel.

Exit codes as for `slipway app` (see `slipway_cli/command.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, Final

from slipway_cli.command import (
    EXIT_OK,
    common_options,
    positive_int,
    print_json,
    run_with_client,
    table,
)
from slipway_client import ApiClient

_COLUMNS: Final = ("ID", "STATUS", "FROM", "BLOCKS", "STARTED AT")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway chain` (list, get, cancel deployment chains) to the parser."""
    parser = subparsers.add_parser(
        "chain",
        help="deployment chains: list, get, cancel (through the API)",
        description="A chain deploys applications block after block once a deployment "
        "with `postSync.chain` succeeds (docs/chains.md).",
    )
    commands = parser.add_subparsers(dest="chain_command", required=True, metavar="COMMAND")
    common = common_options()
    listing = commands.add_parser("list", parents=[common], help="newest chains first")
    listing.add_argument(
        "--limit", type=positive_int, default=20, help="at most this many (default: 20)"
    )
    listing.set_defaults(handler=run_with_client(_list))
    get = commands.add_parser("get", parents=[common], help="a chain's blocks and deployments")
    get.add_argument("chain", metavar="ID")
    get.set_defaults(handler=run_with_client(_get))
    cancel = commands.add_parser(
        "cancel", parents=[common], help="cancel a running chain and the deployments it runs"
    )
    cancel.add_argument("chain", metavar="ID")
    cancel.set_defaults(handler=run_with_client(_cancel))


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    items = client.list_chains(limit=args.limit)
    if args.json:
        print_json(items)
    elif not items:
        print("no chains")
    else:
        rows = [
            (
                c["chain_id"],
                c["status"],
                c["origin_application_id"],
                _progress(c),
                str(c.get("started_at") or ""),
            )
            for c in items
        ]
        print(table([_COLUMNS, *rows]))
    return EXIT_OK


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    chain = client.get_chain(args.chain)
    if args.json:
        print_json(chain)
    else:
        print(describe(chain))
    return EXIT_OK


def _cancel(client: ApiClient, args: argparse.Namespace) -> int:
    answer = client.cancel_chain(args.chain)
    if args.json:
        print_json(answer)
    elif not answer["appended"]:
        print(f"chain {args.chain} was cancelled already")
    else:
        stopped = ", ".join(answer["cancelled_deployments"]) or "none running"
        print(f"chain {args.chain} cancelled; deployments asked to cancel: {stopped}")
    return EXIT_OK


def _progress(chain: Mapping[str, Any]) -> str:
    done = sum(1 for b in chain["blocks"] if b["status"] == "SUCCESS")
    return f"{done}/{len(chain['blocks'])}"


def describe(chain: Mapping[str, Any]) -> str:
    """The chain, then one row per deployment, block by block."""
    lines = [
        f"chain {chain['chain_id']}  {chain['status']}",
        f"  from {chain['origin_application_id']} (deployment {chain['origin_deployment_id']})",
    ]
    if chain["reason"]:
        lines.append(f"  {chain['reason']}")
    rows: list[tuple[str, ...]] = [("BLOCK", "BLOCK STATUS", "APPLICATION", "DEPLOYMENT", "STATUS")]
    for block in chain["blocks"]:
        for d in block["deployments"]:
            rows.append(
                (
                    str(block["index"]),
                    block["status"],
                    d["application_id"],
                    d["deployment_id"],
                    d["status"],
                )
            )
    return "\n".join([*lines, "", table(rows)])
