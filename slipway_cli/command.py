"""What every `slipway` command over the API shares: exit codes, options, errors, output.

Exit codes, for CI to trust (the same for every command that talks to the API):

- 0 done; for `--wait-status`, the deployment reached a wanted status that is
  not a failure (SUCCESS, or a non-terminal one such as RUNNING);
- 1 the API refused or failed (its message is printed), or the deployment
  waited for ended FAILURE or CANCELLED, or ended in a status not wanted, or
  the cluster refused to delete some of a cascade-deleted app's resources;
- 2 a usage or configuration error;
- 3 the API could not be reached (the message names the URL);
- 4 `--wait-status` timed out before the deployment reached a wanted status,
  or `delete --cascade` before the drift service said how the delete went;
- 141 stdout's reader went away early (`| head`): the command stopped quietly
  without finishing (`slipway_cli/__init__.py`, for every command).

The API key comes from `--api-key` or `$SLIPWAY_API_KEY` (prefer the
variable: arguments show in process listings). `--json` prints the API's
answer as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from slipway_client import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    ApiClient,
    ApiError,
    ApiUnreachable,
    api_key,
    api_url,
)

EXIT_OK: Final = 0
EXIT_API_ERROR: Final = 1
EXIT_FAILED: Final = 1
"""A deployment waited for failed, was cancelled, or ended in a status not wanted."""
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_TIMEOUT: Final = 4

Handler = Callable[[ApiClient, argparse.Namespace], int]


def common_options() -> argparse.ArgumentParser:
    """The options every command over the API takes: where, which key, and `--json`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-url",
        help=f"the API's base URL (default: ${API_URL_ENV}, else {DEFAULT_API_URL})",
    )
    common.add_argument(
        "--api-key",
        help=f"the API key (default: ${API_KEY_ENV}; prefer the variable, arguments are visible "
        "to other users of the machine)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return common


def among(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """`text`'s comma-separated words, upper-cased, each one of `allowed`; else a usage error."""
    words = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    unknown = sorted(set(words) - set(allowed))
    if not words or unknown:
        raise argparse.ArgumentTypeError(
            f"{what} are among {', '.join(allowed)}; not {', '.join(unknown) or repr(text)}"
        )
    return words


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1; a usage error else."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds; a usage error else."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def run_with_client(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """`handler` with a client, and the API's failures turned into exit codes."""

    def run(args: argparse.Namespace) -> int:
        # ConfigError → exit 2 in slipway_cli.main
        client = ApiClient(api_url(args.api_url), key=api_key(args.api_key))
        try:
            return handler(client, args)
        except ApiUnreachable as exc:
            fail(str(exc))
            return EXIT_UNREACHABLE
        except ApiError as exc:
            field = f" [{exc.field}]" if exc.field else ""
            fail(f"{exc} (HTTP {exc.status} {exc.code}{field})")
            if exc.status == 401:
                fail(
                    f"set ${API_KEY_ENV} to an API key; the first admin key is made with "
                    "`slipway apikey create --direct --role admin` (needs $SLIPWAY_DATABASE_URL)"
                )
            return EXIT_API_ERROR
        except argparse.ArgumentTypeError as exc:
            fail(str(exc))
            return EXIT_USAGE

    return run


def table(rows: Sequence[Sequence[str]]) -> str:
    """`rows` (the first is the header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def printable(text: str) -> str:
    """A repository's text on one line of a terminal: no control character (an escape
    sequence, a line break) reaches it as such."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clipped(text: str, width: int) -> str:
    """`text` in at most `width` characters, an ellipsis ending a clipped one."""
    return text if len(text) <= width else text[: width - 1] + "…"


def print_json(value: Any) -> None:
    """Print `value` as indented JSON with sorted keys (stable for scripts and diffs)."""
    print(json.dumps(value, indent=2, sort_keys=True))


def fail(message: str) -> None:
    """Print an error on stderr the way every command does: `slipway: message`."""
    print(f"slipway: {message}", file=sys.stderr)
